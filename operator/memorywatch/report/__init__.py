"""The capture report: a self-contained HTML page a person reads in a minute. Pure: no I/O.

`render_report(ReportInput(manifest, heap, heap_baseline))` returns the page as text: what fired and why,
the series that fired as an SVG chart with the window and threshold marked, the top heap growth by
function, the goroutine stacks that grew, and a flame graph of the heap growth (SVG computed here from
the pprof protobufs). Inline CSS and SVG only, no script, and a Content-Security-Policy that forbids
every fetch. The size is bounded by `ReportLimits` whatever the capture holds.

The engine writes it as `report.html` in each capture (engine/capture.py), before the manifest.
"""

from memorywatch.report.chart import ChartSeries, chart_svg, select_series
from memorywatch.report.flame import Flame, FlameLimits, FlameRect, build_flame, flame_svg
from memorywatch.report.page import REPORT_FILE, ReportInput, ReportLimits, render_report

__all__ = [
    "REPORT_FILE",
    "ChartSeries",
    "Flame",
    "FlameLimits",
    "FlameRect",
    "ReportInput",
    "ReportLimits",
    "build_flame",
    "chart_svg",
    "flame_svg",
    "render_report",
    "select_series",
]
