"""The series that fired, drawn as inline SVG with the rule's window shaded and its threshold marked. Pure.

Which series a rule judged, and what its threshold means, per rule kind:

| Kind | Series (manifest `memstatsSeries` column) | Threshold line |
|---|---|---|
| HeapGrowth | `heapLiveBytes` (else `NextGC`/2) | window's first value + `min_growth` |
| GoroutineGrowth | `goroutines` | window's first value + `min_growth` |
| FinalizerBacklog | `heapLiveObjects` | window's first value + `min_growth` |
| NonHeapGrowth | `rssBytes` | window's first value + `min_growth` |
| MemoryLimit | `rssBytes` (else `Sys` − `HeapReleased`) | the memory limit |
| Threshold | the first series the expression names (else `heapLiveBytes`) | none: the expression is shown |
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from memorywatch.api.units import format_bytes, format_count, format_duration

WIDTH_PX = 1200
HEIGHT_PX = 260
MARGIN_LEFT_PX = 80
MARGIN_RIGHT_PX = 20
MARGIN_TOP_PX = 16
MARGIN_BOTTOM_PX = 34
MAX_POINTS = 600
# Exact colours, so a screenshot test can find each part of the chart.
LINE_COLOUR = "rgb(31,111,235)"
WINDOW_COLOUR = "rgb(254,243,199)"
THRESHOLD_COLOUR = "rgb(207,34,46)"

_EXPRESSION_NAMES = {
    "goroutines": "goroutines",
    "heap_live_bytes": "heapLiveBytes",
    "heap_live_objects": "heapLiveObjects",
    "rss_bytes": "rssBytes",
}


@dataclasses.dataclass(frozen=True)
class ChartSeries:
    label: str
    is_bytes: bool
    points: tuple[tuple[float, float], ...]  # (unix seconds, value)
    breach_time: float
    window_seconds: float | None
    threshold: float | None
    threshold_label: str | None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _column(
    rows: Sequence[Mapping[str, Any]], pick: Callable[[Mapping[str, Any]], float | None]
) -> list[tuple[float, float]]:
    out = []
    for row in rows:
        t, v = _number(row.get("time")), pick(row)
        if t is not None and v is not None:
            out.append((t, v))
    return out


def _field(name: str, scale: float = 1.0) -> Callable[[Mapping[str, Any]], float | None]:
    def pick(row: Mapping[str, Any]) -> float | None:
        v = _number(row.get(name))
        return None if v is None else v * scale

    return pick


def _go_resident(row: Mapping[str, Any]) -> float | None:
    sys, released = _number(row.get("Sys")), _number(row.get("HeapReleased"))
    return None if sys is None or released is None else sys - released


def select_series(breach: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> ChartSeries | None:
    """The series `breach` judged, from the manifest's rows; None when the capture holds no such samples."""
    kind = str(breach.get("kind", ""))
    evidence = breach.get("evidence") if isinstance(breach.get("evidence"), Mapping) else {}
    assert isinstance(evidence, Mapping)
    candidates: list[tuple[str, bool, Callable[[Mapping[str, Any]], float | None]]]
    if kind == "GoroutineGrowth":
        candidates = [("goroutines", False, _field("goroutines"))]
    elif kind == "FinalizerBacklog":
        candidates = [("live heap objects", False, _field("heapLiveObjects"))]
    elif kind == "NonHeapGrowth":
        candidates = [("resident memory (RSS)", True, _field("rssBytes"))]
    elif kind == "MemoryLimit":
        candidates = [
            ("resident memory (RSS)", True, _field("rssBytes")),
            ("Sys − HeapReleased", True, _go_resident),
        ]
    elif kind == "Threshold":
        expression = str(evidence.get("expression", ""))
        named = [col for word, col in _EXPRESSION_NAMES.items() if word in expression]
        column = named[0] if named else "heapLiveBytes"
        candidates = [(column, column.endswith("Bytes"), _field(column))]
    else:
        candidates = [
            ("live heap", True, _field("heapLiveBytes")),
            ("live heap (NextGC/2)", True, _field("NextGC", 0.5)),
        ]
    found = [(label, is_bytes, _column(rows, pick)) for label, is_bytes, pick in candidates]
    found = [f for f in found if f[2]]
    if not found:
        return None
    label, is_bytes, points = found[0]
    breach_time = _number(breach.get("time")) or points[-1][0]
    window = _number(evidence.get("window_seconds")) or _number(evidence.get("for_seconds"))
    threshold: float | None = None
    threshold_label: str | None = None
    fmt = format_bytes if is_bytes else format_count
    if kind == "MemoryLimit" and _number(evidence.get("limit_bytes")) is not None:
        threshold = _number(evidence.get("limit_bytes"))
        assert threshold is not None
        threshold_label = f"limit {fmt(threshold)}"
    elif kind != "Threshold":
        first, min_growth = _number(evidence.get("first_value")), _number(evidence.get("min_growth"))
        if first is not None and min_growth is not None:
            threshold = first + min_growth
            threshold_label = f"window start + minGrowth ({fmt(min_growth)})"
    if len(points) > MAX_POINTS:  # evenly thinned, keeping the last point (the breach)
        step = len(points) / MAX_POINTS
        points = [points[int(i * step)] for i in range(MAX_POINTS - 1)] + [points[-1]]
    return ChartSeries(label, is_bytes, tuple(points), breach_time, window, threshold, threshold_label)


def chart_svg(series: ChartSeries) -> str:
    """The chart as one `<svg>` element: window shaded, threshold dashed, breach time as a vertical line."""
    fmt = format_bytes if series.is_bytes else format_count
    times = [t for t, _ in series.points] + [series.breach_time]
    if series.window_seconds:
        times.append(series.breach_time - series.window_seconds)
    t0, t1 = min(times), max(times)
    values = [v for _, v in series.points] + ([series.threshold] if series.threshold is not None else [])
    v1 = max(max(values), 1.0) * 1.08
    v0 = 0.0
    plot_w = WIDTH_PX - MARGIN_LEFT_PX - MARGIN_RIGHT_PX
    plot_h = HEIGHT_PX - MARGIN_TOP_PX - MARGIN_BOTTOM_PX
    span = max(t1 - t0, 1e-9)

    def x(t: float) -> float:
        return MARGIN_LEFT_PX + (t - t0) / span * plot_w

    def y(v: float) -> float:
        return MARGIN_TOP_PX + plot_h - (v - v0) / (v1 - v0) * plot_h

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}" '
        f'width="{WIDTH_PX}" height="{HEIGHT_PX}" role="img" aria-label="{html.escape(series.label)} over time">'
    ]
    if series.window_seconds:
        wx = x(series.breach_time - series.window_seconds)
        out.append(
            f'<rect class="window" x="{wx:.1f}" y="{MARGIN_TOP_PX}" width="{x(series.breach_time) - wx:.1f}" '
            f'height="{plot_h}" fill="{WINDOW_COLOUR}"><title>the rule\'s window: '
            f"{format_duration(series.window_seconds)}</title></rect>"
        )
    for i in range(5):  # horizontal grid and value labels
        v = v0 + (v1 - v0) * i / 4
        out.append(
            f'<line x1="{MARGIN_LEFT_PX}" x2="{WIDTH_PX - MARGIN_RIGHT_PX}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="rgb(225,228,232)"/><text x="{MARGIN_LEFT_PX - 6}" y="{y(v) + 4:.1f}" '
            f'text-anchor="end">{html.escape(fmt(v))}</text>'
        )
    for i in range(5):  # time labels, relative to the breach
        t = t0 + span * i / 4
        out.append(
            f'<text x="{x(t):.1f}" y="{HEIGHT_PX - 12}" text-anchor="middle">'
            f"{html.escape(_relative(t - series.breach_time))}</text>"
        )
    if series.threshold is not None:
        ty = y(series.threshold)
        out.append(
            f'<line class="threshold" x1="{MARGIN_LEFT_PX}" x2="{WIDTH_PX - MARGIN_RIGHT_PX}" y1="{ty:.1f}" '
            f'y2="{ty:.1f}" stroke="{THRESHOLD_COLOUR}" stroke-width="2" stroke-dasharray="8 4"/>'
            f'<text x="{WIDTH_PX - MARGIN_RIGHT_PX - 4}" y="{ty - 5:.1f}" text-anchor="end" '
            f'fill="{THRESHOLD_COLOUR}">{html.escape(series.threshold_label or "")}</text>'
        )
    bx = x(series.breach_time)
    out.append(
        f'<line class="breach" x1="{bx:.1f}" x2="{bx:.1f}" y1="{MARGIN_TOP_PX}" y2="{MARGIN_TOP_PX + plot_h}" '
        f'stroke="{THRESHOLD_COLOUR}" stroke-width="1"/>'
    )
    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series.points)
    out.append(
        f'<polyline class="series" points="{path}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2.5"/>'
    )
    if len(series.points) == 1:
        px, py = x(series.points[0][0]), y(series.points[0][1])
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{LINE_COLOUR}"/>')
    out.append("</svg>")
    return "".join(out)


def _relative(seconds: float) -> str:
    if abs(seconds) < 0.5:
        return "breach"
    return ("−" if seconds < 0 else "+") + format_duration(abs(seconds))
