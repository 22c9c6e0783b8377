"""The package's public names and its error tree, as documented in its docstring."""

from __future__ import annotations

import memorywatch.pprof as pprof
from memorywatch.pprof import errors


def test_exported_names_are_pinned() -> None:
    # Others build on these names; changing this list is a decision, not an accident.
    assert pprof.__all__ == sorted(pprof.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in pprof.__all__:
        assert getattr(pprof, name) is not None
    assert set(pprof.__all__) >= {
        "PprofError",
        "parse_memstats_lines",
        "HeapTextParser",
        "parse_goroutine_debug1",
        "diff_goroutines",
        "growing_groups",
        "blocked_finalizer",
        "group_name",
        "parse_index",
        "parse_expvar",
        "parse_prometheus_text",
        "gunzip_capped",
        "parse_profile",
        "profile_info",
        "top_growth",
        "top_growth_by_function",
    }


def test_error_tree() -> None:
    assert issubclass(pprof.NotPprofIndex, pprof.PprofError)
    assert issubclass(pprof.MalformedText, pprof.PprofError)
    assert issubclass(pprof.MalformedJSON, pprof.PprofError)
    assert issubclass(pprof.MalformedMetrics, pprof.PprofError)
    for leaf in (
        pprof.ProfileTruncated,
        pprof.ProfileCorrupt,
        pprof.ProfileTooLarge,
        pprof.SampleTypeMissing,
    ):
        assert issubclass(leaf, pprof.ProfileError)
    assert issubclass(pprof.ProfileError, pprof.PprofError)
    # Every error class is named in the package docstring's tree.
    doc = pprof.__doc__ or ""
    for name, value in vars(errors).items():
        if isinstance(value, type) and issubclass(value, pprof.PprofError):
            assert name in doc, name


def test_snippet_escapes_and_truncates() -> None:
    assert errors.snippet("") == "<empty>"
    assert errors.snippet(b"  \n<html>") == '"<html>"'
    assert errors.snippet("\x1b[2J\né" + "a" * 100) == '"\\x1b[2J\\x0a\\xe9' + "a" * 54 + '"…'
