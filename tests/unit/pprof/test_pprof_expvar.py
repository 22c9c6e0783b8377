"""/debug/vars: MemStats under Go field names, the command line, and bodies that are not expvar JSON."""

from __future__ import annotations

import json
import pathlib

import pytest

from memorywatch.pprof import MalformedJSON, parse_expvar


def test_real_vars(go_fixtures_dir: pathlib.Path) -> None:
    raw = (go_fixtures_dir / "vars.json").read_bytes()
    document = json.loads(raw)
    snapshot = parse_expvar(raw)
    assert snapshot.cmdline is not None and "-mode=heap-leak" in snapshot.cmdline
    assert snapshot.names == ("cmdline", "memstats")
    stats = snapshot.memstats
    assert stats is not None
    go = document["memstats"]
    assert stats.sys == go["Sys"]
    assert stats.heap_alloc == go["HeapAlloc"]
    assert (stats.stack_inuse, stats.stack_sys) == (go["StackInuse"], go["StackSys"])
    assert (stats.mspan_inuse, stats.mcache_sys) == (go["MSpanInuse"], go["MCacheSys"])
    assert stats.pause_ns == tuple(go["PauseNs"]) and len(stats.pause_ns) == 256
    assert stats.gc_cpu_fraction == go["GCCPUFraction"]
    assert stats.debug_gc is False
    assert stats.max_rss is None  # expvar has no MaxRSS; BySize is ignored
    assert stats.go_fields()["NextGC"] == go["NextGC"]


def test_odd_values_blank_their_field_only() -> None:
    body = json.dumps(
        {"memstats": {"Sys": 10, "Alloc": "12", "PauseNs": [1, -2], "GCCPUFraction": 0, "DebugGC": 1}}
    )
    stats = parse_expvar(body.encode()).memstats
    assert stats is not None
    assert stats.sys == 10
    assert stats.alloc is None and stats.pause_ns is None and stats.debug_gc is None
    assert stats.gc_cpu_fraction == 0.0


def test_expvar_without_memstats() -> None:
    snapshot = parse_expvar(b'{"requests": 12, "cmdline": "not a list"}')
    assert snapshot.memstats is None
    assert snapshot.cmdline is None


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>Not Found</html>", b"[1, 2]", b'"memstats"', b"\xff\xfe\x00garbage", b"[" * 100_000],
)
def test_non_json_or_non_object_bodies(body: bytes) -> None:
    with pytest.raises(MalformedJSON, match="expected an expvar JSON object"):
        parse_expvar(body)
