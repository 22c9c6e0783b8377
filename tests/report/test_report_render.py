"""The report renderer, pure: real Go heap profiles (recorded fixtures) and hostile manifests.

Aspects: the flame graph is the per-stack growth over the baseline, laid out within its parent and capped;
the chart picks the series each rule kind judged and marks its window and threshold; the page escapes
everything, fetches nothing, stays bounded whatever the manifest holds, and says what it cannot draw.
"""

from __future__ import annotations

import math
import pathlib
import re
from typing import Any

import pytest

from memorywatch.pprof.profiles import parse_profile
from memorywatch.report import (
    FlameLimits,
    ReportInput,
    ReportLimits,
    build_flame,
    chart_svg,
    flame_svg,
    render_report,
    select_series,
)
from memorywatch.report.chart import MAX_POINTS

MiB = 1 << 20


@pytest.fixture(scope="module")
def heaps(go_fixtures_dir: pathlib.Path) -> tuple[bytes, bytes]:
    return (go_fixtures_dir / "heap_base.pb.gz").read_bytes(), (
        go_fixtures_dir / "heap_later.pb.gz"
    ).read_bytes()


def _manifest(**over: Any) -> dict[str, Any]:
    rows = [
        {"time": 1000.0 + 2 * i, "heapLiveBytes": 10 * MiB + i * MiB, "goroutines": 10 + i} for i in range(30)
    ]
    m: dict[str, Any] = {
        "namespace": "shop",
        "memorywatch": "checkout",
        "pod": "checkout-0",
        "rule": "heap-growth",
        "time": "2026-12-01T10:00:00Z",
        "summary": "live heap grew",
        "breaches": [
            {
                "rule": "heap-growth",
                "kind": "HeapGrowth",
                "time": 1058.0,
                "message": "The live heap grew.",
                "evidence": {
                    "window_seconds": 20.0,
                    "first_value": 29.0 * MiB,
                    "min_growth": 8.0 * MiB,
                    "unit": "bytes",
                },
            }
        ],
        "memstatsSeries": rows,
        "heap": {
            "topGrowth": [
                {
                    "function": "main.retainRecords",
                    "file": "b.go",
                    "line": 9,
                    "inuseBytesDelta": 5 * MiB,
                    "inuseBytes": 6 * MiB,
                }
            ],
            "comparedTo": "baseline",
        },
        "goroutines": {"total": 12, "topGrowth": []},
        "files": [{"name": "heap.pb.gz", "size": 10, "sha256": "ab" * 32}],
        "errors": [],
    }
    m.update(over)
    return m


def test_the_flame_graph_is_the_growth_over_the_baseline(heaps: tuple[bytes, bytes]) -> None:
    base, later = (parse_profile(h, 1 << 30) for h in heaps)
    flame = build_flame(later, base)
    assert flame.compared_to_baseline and flame.total_bytes > 0
    root = flame.rects[0]
    assert (root.name, root.depth, root.x, root.width) == ("all", 0, 0.0, 1.0)
    assert "main.retainRecords" in {r.name for r in flame.rects}
    # Children lie within their parent: at every depth the widths add up to at most the whole.
    for depth in {r.depth for r in flame.rects}:
        level = [r for r in flame.rects if r.depth == depth]
        assert sum(r.width for r in level) <= 1.0 + 1e-9
        assert all(r.x >= 0.0 and r.x + r.width <= 1.0 + 1e-9 for r in level)
    # Without a baseline the graph is what is in use now: more than what grew.
    assert build_flame(later, None).total_bytes > flame.total_bytes


def test_the_flame_graph_is_capped(heaps: tuple[bytes, bytes]) -> None:
    later = parse_profile(heaps[1], 1 << 30)
    capped = build_flame(later, None, FlameLimits(max_nodes=4))
    assert len(capped.rects) == 4 and capped.dropped_nodes > 0
    shallow = build_flame(later, None, FlameLimits(max_depth_frames=2))
    assert max(r.depth for r in shallow.rects) <= 2


def test_a_profile_identical_to_its_baseline_draws_nothing(heaps: tuple[bytes, bytes]) -> None:
    later = parse_profile(heaps[1], 1 << 30)
    assert build_flame(later, later).rects == ()
    page = render_report(ReportInput(_manifest(), heaps[1], heaps[1]))
    assert "No stack grew between the baseline and the capture" in page


def test_the_chart_marks_window_threshold_and_breach() -> None:
    m = _manifest()
    series = select_series(m["breaches"][0], m["memstatsSeries"])
    assert series is not None and series.label == "live heap" and series.is_bytes
    assert series.threshold == 37.0 * MiB and series.window_seconds == 20.0
    svg = chart_svg(series)
    assert 'class="window"' in svg and 'class="threshold"' in svg and 'class="breach"' in svg
    assert len(re.findall(r"[\d.]+,[\d.]+", svg.split('class="series" points="')[1].split('"')[0])) == 30


@pytest.mark.parametrize(
    ("kind", "evidence", "label", "threshold"),
    [
        ("GoroutineGrowth", {"first_value": 10, "min_growth": 300}, "goroutines", 310.0),
        ("NonHeapGrowth", {"first_value": MiB, "min_growth": MiB}, "resident memory (RSS)", 2.0 * MiB),
        ("MemoryLimit", {"limit_bytes": 64 * MiB}, "resident memory (RSS)", 64.0 * MiB),
        ("Threshold", {"expression": "goroutines > 150", "for_seconds": 4}, "goroutines", None),
    ],
)
def test_each_rule_kind_charts_the_series_it_judged(
    kind: str, evidence: dict[str, Any], label: str, threshold: float | None
) -> None:
    rows = [{"time": float(i), "goroutines": i, "rssBytes": i * MiB} for i in range(5)]
    series = select_series({"kind": kind, "time": 4.0, "evidence": evidence}, rows)
    assert series is not None and series.label == label and series.threshold == threshold


def test_series_are_thinned_and_bad_numbers_skipped() -> None:
    rows: list[dict[str, Any]] = [{"time": float(i), "heapLiveBytes": i} for i in range(5 * MAX_POINTS)]
    rows += [
        {"time": 1e9, "heapLiveBytes": math.nan},
        {"time": "x", "heapLiveBytes": 1},
        {"time": 2e9, "heapLiveBytes": True},
    ]
    series = select_series({"kind": "HeapGrowth", "evidence": {}}, rows)
    assert series is not None and len(series.points) == MAX_POINTS
    assert series.points[-1] == (5.0 * MAX_POINTS - 1, 5.0 * MAX_POINTS - 1)
    assert select_series({"kind": "HeapGrowth"}, [{"time": 1.0}]) is None


def test_the_page_has_every_section_and_fetches_nothing(heaps: tuple[bytes, bytes]) -> None:
    page = render_report(ReportInput(_manifest(), heaps[1], heaps[0]))
    for anchor in ("summary", "why", "chart", "heap", "goroutines", "flame", "files"):
        assert f'id="{anchor}"' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", page)
    assert set(re.findall(r"https?://[^\s\"'<]+", page)) == {"http://www.w3.org/2000/svg"}


def test_hostile_strings_are_escaped_and_the_size_is_bounded(heaps: tuple[bytes, bytes]) -> None:
    evil = '<script>alert(1)</script><img src="http://evil.example/x">' * 200
    rows = [{"function": evil, "file": evil, "line": 1, "inuseBytesDelta": 1, "inuseBytes": 1}] * 10_000
    m = _manifest(
        summary=evil,
        pod=evil,
        breaches=[{"rule": evil, "kind": evil, "message": evil, "evidence": {evil: evil}}] * 1000,
        heap={"topGrowth": rows, "comparedTo": evil},
        goroutines={
            "total": evil,
            "topGrowth": [{"function": evil, "stack": [evil] * 1000, "before": "x"}] * 1000,
        },
        files=[{"name": evil, "size": "big", "sha256": evil}] * 10_000,
        errors=[evil] * 10_000,
    )
    page = render_report(ReportInput(m, heaps[1], heaps[0]))
    assert "<script" not in page and "<img" not in page and "evil.example" not in page.split("&lt;img")[0]
    assert len(page) < 600_000, len(page)


@pytest.mark.parametrize(
    "manifest",
    [
        {},
        {"breaches": "x", "memstatsSeries": 5, "heap": [], "goroutines": None, "files": {}},
        {"breaches": [None, 3]},
    ],
)
def test_a_malformed_manifest_still_renders(manifest: dict[str, Any]) -> None:
    page = render_report(ReportInput(manifest))
    assert page.startswith("<!DOCTYPE html>") and "No heap profile was captured" in page


def test_a_corrupt_heap_profile_is_said_not_drawn(heaps: tuple[bytes, bytes]) -> None:
    page = render_report(ReportInput(_manifest(), b"\x1f\x8b garbage", heaps[0]))
    assert "The heap profile cannot be drawn" in page and '<svg class="flame"' not in page
    small = render_report(ReportInput(_manifest(), heaps[1]), ReportLimits(max_profile_bytes=10))
    assert "The heap profile cannot be drawn" in small


def test_frames_have_tooltips_and_short_labels(heaps: tuple[bytes, bytes]) -> None:
    flame = build_flame(parse_profile(heaps[1], 1 << 30), None)
    svg = flame_svg(flame)
    assert svg.count("<title>") == len(flame.rects)
    assert "main.retainRecords: +" in svg


def test_only_the_stacks_that_grew_most_are_laid_out(heaps: tuple[bytes, bytes]) -> None:
    later = parse_profile(heaps[1], 1 << 30)
    full = build_flame(later, None)
    one = build_flame(later, None, FlameLimits(max_stacks=1))
    assert one.total_bytes == full.total_bytes
    assert "(other stacks)" in {r.name for r in one.rects if r.depth == 1}
