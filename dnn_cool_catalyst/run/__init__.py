"""The run directory: one object owns every path and file in it (see run/layout.py)."""
