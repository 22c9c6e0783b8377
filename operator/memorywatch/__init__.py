"""MemoryWatch: catch memory leaks in Go services while they happen, and keep the evidence."""

__version__ = "0.1.0"

__all__ = ["__version__"]
