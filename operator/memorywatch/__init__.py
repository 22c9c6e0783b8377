"""MemoryWatch: catch memory leaks in Go services while they happen, and keep the evidence."""

# The one place the version is written. pyproject.toml reads it (hatch), the chart's version/appVersion and
# the image tag must equal it (tests/packaging/test_versions.py); CHANGELOG.md has a section per version.
__version__ = "0.1.0"

__all__ = ["__version__"]
