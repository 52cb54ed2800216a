"""Encoders: the family table (where each architecture keeps its heads and FFN), checkpoint I/O that rebuilds
uneven widths, sizes, the bundled and fetched teachers, model cards."""
