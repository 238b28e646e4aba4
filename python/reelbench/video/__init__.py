"""Video handling: canonical format, frame access, normalization (PyAV)."""
