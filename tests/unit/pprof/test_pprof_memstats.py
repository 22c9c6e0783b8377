"""The runtime.MemStats block: every printed line, including the pairs and arrays, and resilience to odd values."""

from __future__ import annotations

import dataclasses
import pathlib
import random

import pytest

from memorywatch.pprof import parse_heap_text, parse_memstats_lines
from memorywatch.pprof.errors import BudgetExceeded
from memorywatch.pprof.heap_text import HeapTextParser
from memorywatch.pprof.memstats import MAX_ARRAY_ENTRIES, _array, _int


def memstats_lines(path: pathlib.Path) -> list[str]:
    lines = path.read_text().splitlines()
    return lines[lines.index("# runtime.MemStats") :]


def test_every_line_of_a_real_block(go_fixtures_dir: pathlib.Path) -> None:
    stats = parse_memstats_lines(memstats_lines(go_fixtures_dir / "heap_debug1.txt"))
    # Numbers copied from the fixture file.
    assert stats.alloc == 6791352
    assert stats.total_alloc == 9466496
    assert stats.sys == 21600520
    assert stats.lookups == 0
    assert stats.mallocs == 4905
    assert stats.frees == 874
    assert stats.heap_alloc == 6791352
    assert stats.heap_sys == 16351232
    assert stats.heap_idle == 8790016
    assert stats.heap_inuse == 7561216
    assert stats.heap_released == 7323648
    assert stats.heap_objects == 4031
    assert (stats.stack_inuse, stats.stack_sys) == (425984, 425984)
    assert (stats.mspan_inuse, stats.mspan_sys) == (157280, 163200)
    assert (stats.mcache_inuse, stats.mcache_sys) == (4592, 16072)
    assert stats.buck_hash_sys == 1444849
    assert stats.gc_sys == 2429680
    assert stats.other_sys == 769503
    assert stats.next_gc == 13799098
    assert stats.last_gc == 1795628958192369229
    assert stats.pause_ns is not None and len(stats.pause_ns) == 256
    assert stats.pause_ns[:5] == (53800, 18528, 264594, 59598, 48403)
    assert stats.pause_end is not None and len(stats.pause_end) == 256
    assert stats.pause_end[4] == stats.last_gc  # the last pause ended at LastGC
    assert stats.num_gc == 5
    assert stats.num_forced_gc == 3
    assert stats.gc_cpu_fraction == 3.924108219130207e-05  # printed in e-notation
    assert stats.debug_gc is False
    assert stats.max_rss == 31576064


def test_go_fields_round_trip_uses_go_names(go_fixtures_dir: pathlib.Path) -> None:
    stats = parse_memstats_lines(memstats_lines(go_fixtures_dir / "heap_debug1.txt"))
    fields = stats.go_fields()
    assert fields["Sys"] == 21600520
    assert fields["StackInuse"] == 425984
    assert isinstance(fields["PauseNs"], list) and len(fields["PauseNs"]) == 256


def test_cgo_target_reports_rss_peak_above_sys(go_fixtures_dir: pathlib.Path) -> None:
    # The cgo leak is invisible to the Go runtime's accounting but not to ru_maxrss.
    heap = parse_heap_text((go_fixtures_dir / "heap_debug1_cgo.txt").read_text())
    assert heap.memstats is not None
    assert heap.memstats.max_rss is not None and heap.memstats.sys is not None
    assert heap.memstats.max_rss > heap.memstats.sys


def test_a_malformed_value_blanks_only_its_field() -> None:
    stats = parse_memstats_lines(
        [
            "# runtime.MemStats",
            "# Alloc = 12x",
            "# Sys = 4096",
            "# Stack = 8192",  # the pair lost its sys half
            "# MSpan = 1 / 2",
            "# PauseNs = [1 2 three]",
            "# PauseEnd = 5",
            "# GCCPUFraction = NaN",
            "# DebugGC = maybe",
            "# HeapAlloc = -5",
            "# MaxRSS = 1_000",
        ]
    )
    assert stats.sys == 4096
    assert (stats.mspan_inuse, stats.mspan_sys) == (1, 2)
    assert stats.alloc is None
    assert (stats.stack_inuse, stats.stack_sys) == (None, None)
    assert stats.pause_ns is None and stats.pause_end is None
    assert stats.gc_cpu_fraction is None
    assert stats.debug_gc is None
    assert stats.heap_alloc is None
    assert stats.max_rss is None


def test_missing_and_unknown_lines() -> None:
    # A non-unix target prints no MaxRSS; a future Go may print fields we do not know.
    stats = parse_memstats_lines(["# Sys = 10", "# FutureField = 3", "not a memstats line", "", "# = 4"])
    assert stats.sys == 10
    assert stats.max_rss is None
    assert stats.go_fields() == {"Sys": 10}


def test_float_in_plain_notation_and_debug_gc_true() -> None:
    stats = parse_memstats_lines(["# GCCPUFraction = 0.0125", "# DebugGC = true"])
    assert stats.gc_cpu_fraction == 0.0125
    assert stats.debug_gc is True


def _array_one_by_one(text: str) -> tuple[int, ...] | None:
    """The array rule stated item by item (the code checks all items at once): each item is what `_int`
    accepts, else the whole array is unknown."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    values = [_int(item) for item in text[1:-1].split()]
    return None if any(v is None for v in values) else tuple(v for v in values if v is not None)


def test_an_array_is_read_exactly_as_each_of_its_items_would_be() -> None:
    rng = random.Random(7)
    full = "[" + " ".join(str(rng.getrandbits(64)) for _ in range(256)) + "]"
    odd = ["[]", "[ ]", " [5] ", "[1  2\t3]", "[ 1 2 ]", "[1 x 3]", "[1 +2]", "[1 2_0]", "[１ 2]", "[1 ²]"]
    odd += ["[1 " + "9" * 24 + "]", "[1 " + "9" * 25 + "]", "[-1 2]", "[1.5]", "[1,2]", "x", "[1 2", full]
    for text in odd:
        assert _array(text) == _array_one_by_one(text), text


def test_without_arrays_the_reading_equals_the_full_one_minus_its_arrays(
    go_fixtures_dir: pathlib.Path,
) -> None:
    lines = memstats_lines(go_fixtures_dir / "heap_debug1.txt")
    full = parse_memstats_lines(lines)
    assert full.pause_ns is not None
    assert parse_memstats_lines(lines, arrays=False) == full.without_arrays()
    text = (go_fixtures_dir / "heap_debug1.txt").read_text()
    parser = HeapTextParser(memstats_arrays=False)
    for line in text.splitlines():
        parser.feed(line)
    assert parser.result() == dataclasses.replace(parse_heap_text(text), memstats=full.without_arrays())
    with pytest.raises(BudgetExceeded) as caught:  # the entry budget holds without converting them
        parse_memstats_lines(
            ["# PauseNs = [" + " ".join(["1"] * (MAX_ARRAY_ENTRIES + 1)) + "]"], arrays=False
        )
    assert caught.value.limit_name == "max_memstats_array_entries"
