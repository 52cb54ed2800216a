"""The run folder: atomic writes (io, imports nothing of stark), the layout of every path (layout), the typed
records written there, the lock, staleness checks and provenance."""
