"""The capture report: one self-contained HTML page (inline CSS and SVG, no script, no external fetch). Pure.

Everything shown comes from a capture's own data, which comes from the target pod: every string is
escaped, every list is capped, and the page's Content-Security-Policy forbids any fetch, so even a
rendering bug cannot make a reader's browser reach the network.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from memorywatch.api.units import format_bytes
from memorywatch.pprof import PprofError
from memorywatch.pprof.profiles import parse_profile
from memorywatch.report.chart import chart_svg, select_series
from memorywatch.report.flame import FlameLimits, build_flame, flame_svg

REPORT_FILE = "report.html"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_TEXT_CHARS = 400
MAX_EVIDENCE_ITEMS = 16


@dataclasses.dataclass(frozen=True)
class ReportLimits:
    max_breaches: int = 8
    max_heap_rows: int = 15
    max_goroutine_rows: int = 10
    max_stack_frames: int = 8
    max_file_rows: int = 40
    max_profile_bytes: int = 512 * 1024 * 1024  # decompressed, per profile
    flame: FlameLimits = dataclasses.field(default_factory=FlameLimits)


@dataclasses.dataclass(frozen=True)
class ReportInput:
    """A capture's data: its manifest (or the manifest about to be written) and the heap profiles."""

    manifest: Mapping[str, Any]
    heap: bytes | None = None
    heap_baseline: bytes | None = None


def _t(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return int(value)


def _evidence_value(key: str, value: Any, unit: Any) -> str:
    """An evidence number as judged, plus a readable form for byte amounts."""
    text = _t(value, 200)
    byte_keys = ("_value", "growth", "_window", "floor_rise", "_bytes", "slope_per_second")
    if (
        unit == "bytes"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and key.endswith(byte_keys)
    ):
        suffix = "/s" if key.endswith("per_second") else ""
        text += f' <span class="meta">({_t(format_bytes(_int(value)))}{suffix})</span>'
    return text


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1240px;color:#1f2328;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#59636e}.summary{font-size:16px;background:#fff8f8;border-left:4px solid rgb(207,34,46);padding:8px 12px;margin:12px 0}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa}table.evidence{width:auto;margin-bottom:8px}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}pre{margin:0;white-space:pre-wrap;word-break:break-all}
svg text{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;fill:#1f2328}.flame text{pointer-events:none}
.note{color:#9a6700}.legend span{display:inline-block;margin-right:16px}
.sw{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
""".strip()


def render_report(data: ReportInput, limits: ReportLimits | None = None) -> str:
    """The page, as text. Never raises for bad data in the capture: what cannot be drawn is said instead."""
    limits = limits or ReportLimits()
    m = data.manifest
    breaches = [_map(b) for b in _list(m.get("breaches"))][: limits.max_breaches]
    title = f"{m.get('namespace')}/{m.get('memorywatch')} · pod {m.get('pod')} · {m.get('rule')}"
    body = [
        f"<h1>Memory capture: {_t(title)}</h1>",
        f'<div class="meta">taken {_t(m.get("time"))} from {_t(m.get("target"))} by '
        f"{_t(_map(m.get('tool')).get('name'))} {_t(_map(m.get('tool')).get('version'))}</div>",
        f'<div class="summary" id="summary">{_t(m.get("summary"), 1000)}</div>',
        *_why(breaches),
        *_chart(breaches, [_map(r) for r in _list(m.get("memstatsSeries"))]),
        *_heap_table(_map(m.get("heap")), limits),
        *_goroutine_table(_map(m.get("goroutines")), limits),
        *_flame(data, limits),
        *_files(m, limits),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_t(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _why(breaches: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ['<h2 id="why">What fired and why</h2>']
    for b in breaches:
        out.append(f"<p><b>{_t(b.get('rule'))}</b> ({_t(b.get('kind'))}): {_t(b.get('message'), 2000)}</p>")
        raw = _map(b.get("evidence"))
        evidence = [(str(k), v) for k, v in raw.items() if isinstance(v, int | float | str)]
        if evidence:
            cells = "".join(
                f"<tr><th>{_t(k, 80)}</th><td>{_evidence_value(k, v, raw.get('unit'))}</td></tr>"
                for k, v in evidence[:MAX_EVIDENCE_ITEMS]
            )
            out.append(f'<table class="evidence">{cells}</table>')
    if not breaches:
        out.append('<p class="note">The manifest names no breach.</p>')
    return out


def _chart(breaches: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ['<h2 id="chart">The series that fired</h2>']
    series = select_series(breaches[0], rows) if breaches else None
    if series is None:
        out.append('<p class="note">No samples of this series were recorded before the capture.</p>')
        return out
    legend = [
        f'<span><i class="sw" style="background:rgb(31,111,235)"></i>{_t(series.label)}</span>',
        '<span><i class="sw" style="background:rgb(254,243,199)"></i>the rule\'s window</span>',
    ]
    if series.threshold_label:
        legend.append(
            f'<span><i class="sw" style="background:rgb(207,34,46)"></i>{_t(series.threshold_label)}</span>'
        )
    out.append(f'<div class="legend">{"".join(legend)}</div>')
    out.append(chart_svg(series))
    return out


def _heap_table(heap: Mapping[str, Any], limits: ReportLimits) -> list[str]:
    rows = [_map(g) for g in _list(heap.get("topGrowth"))][: limits.max_heap_rows]
    out = [f'<h2 id="heap">Top heap growth by function (compared to {_t(heap.get("comparedTo"))})</h2>']
    if not rows:
        return [*out, '<p class="note">No heap growth was found (or no heap profile was captured).</p>']
    out.append(
        '<table class="heap"><tr><th>function</th><th>growth</th><th>in use now</th><th>where</th></tr>'
    )
    for g in rows:
        out.append(
            f"<tr><td><code>{_t(g.get('function'))}</code></td>"
            f'<td class="num">+{_t(format_bytes(_int(g.get("inuseBytesDelta"))))}</td>'
            f'<td class="num">{_t(format_bytes(_int(g.get("inuseBytes"))))}</td>'
            f"<td><code>{_t(g.get('file'))}:{_int(g.get('line'))}</code></td></tr>"
        )
    out.append("</table>")
    return out


def _goroutine_table(gor: Mapping[str, Any], limits: ReportLimits) -> list[str]:
    rows = [_map(g) for g in _list(gor.get("topGrowth"))][: limits.max_goroutine_rows]
    out = [f'<h2 id="goroutines">Goroutine stacks that grew (total now {_t(gor.get("total"))})</h2>']
    if not rows:
        return [*out, '<p class="note">No goroutine stack group grew.</p>']
    out.append(
        '<table class="goroutines"><tr><th>function</th><th>before</th><th>now</th><th>growth</th><th>stack</th></tr>'
    )
    for g in rows:
        stack = "\n".join(_t(f, 200) for f in _list(g.get("stack"))[: limits.max_stack_frames])
        out.append(
            f'<tr><td><code>{_t(g.get("function"))}</code></td><td class="num">{_int(g.get("before"))}</td>'
            f'<td class="num">{_int(g.get("after"))}</td><td class="num">+{_int(g.get("delta"))}</td>'
            f"<td><pre>{stack}</pre></td></tr>"
        )
    out.append("</table>")
    return out


def _flame(data: ReportInput, limits: ReportLimits) -> list[str]:
    out = ['<h2 id="flame">Flame graph of the heap growth</h2>']
    if data.heap is None:
        return [*out, '<p class="note">No heap profile was captured.</p>']
    try:
        new = parse_profile(data.heap, limits.max_profile_bytes)
        base = parse_profile(data.heap_baseline, limits.max_profile_bytes) if data.heap_baseline else None
        flame = build_flame(new, base, limits.flame)
    except PprofError as e:
        return [*out, f'<p class="note">The heap profile cannot be drawn: {_t(e)}</p>']
    if not flame.rects:
        return [*out, '<p class="note">No stack grew between the baseline and the capture.</p>']
    what = (
        "in-use bytes that appeared since the baseline"
        if flame.compared_to_baseline
        else "in-use bytes (no baseline to compare to)"
    )
    out.append(
        f"<p>Width is {what}: +{_t(format_bytes(flame.total_bytes))} in all; the root is at the top, callees below. "
        "Hover a frame for its size."
        + (f" {flame.dropped_nodes} frames too narrow to see are left out." if flame.dropped_nodes else "")
        + "</p>"
    )
    out.append(flame_svg(flame))
    return out


def _files(m: Mapping[str, Any], limits: ReportLimits) -> list[str]:
    out = ['<h2 id="files">Files</h2><table class="files"><tr><th>file</th><th>size</th><th>sha256</th></tr>']
    for f in [_map(f) for f in _list(m.get("files"))][: limits.max_file_rows]:
        out.append(
            f'<tr><td><code>{_t(f.get("name"))}</code></td><td class="num">{_t(format_bytes(_int(f.get("size"))))}</td>'
            f"<td><code>{_t(f.get('sha256'), 80)}</code></td></tr>"
        )
    out.append("</table>")
    for err in _list(m.get("errors"))[:20]:
        out.append(f'<p class="note">not captured: {_t(err)}</p>')
    out.append(
        '<p class="meta">Open the profiles: <code>go tool pprof -http=: -diff_base heap-baseline.pb.gz heap.pb.gz</code></p>'
    )
    return out
