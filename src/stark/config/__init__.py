"""Configuration: the schema (dataclasses with help text), flags from fields, recipes and layering, validation."""
