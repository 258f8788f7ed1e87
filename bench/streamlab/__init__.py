"""The parts of bench/streaming.py (run that file; see its docstring)."""
