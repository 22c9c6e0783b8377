"""The HTML report of a REAL capture opened in headless Chromium with no network access.

A real Go process leaks heap; `memorywatch watch` (a subprocess, as a user runs it) fires HeapGrowth and
writes the capture, report.html included. Chromium then opens that report through a proxy that records
every request (there must be none), dumps the DOM, and takes a screenshot, kept under tests/output/report/
($MEMORYWATCH_TEST_OUTPUT overrides). We test these aspects: the manifest lists report.html with a correct
sha256; the page makes no request; the chart (series line, shaded window, threshold line), the heap table
and the flame graph are really painted, found by their exact colours in the screenshot, in that order.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re

import pytest

from memorywatch.report.chart import LINE_COLOUR, THRESHOLD_COLOUR, WINDOW_COLOUR
from memorywatch.report.flame import frame_colour
from report.browser import recording_proxy, run_chromium
from report.png import read_png
from support.gotargets import GoTarget
from support.watch import run_watch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
OUTPUT = pathlib.Path(os.environ.get("MEMORYWATCH_TEST_OUTPUT", pathlib.Path(__file__).parents[1] / "output"))
WIDTH, HEIGHT = 1280, 2400


def _rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in re.findall(r"\d+", css))
    return r, g, b


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory: pytest.TempPathFactory, gotarget_binary: pathlib.Path) -> pathlib.Path:
    work = tmp_path_factory.mktemp("report-capture")
    rules = work / "rules.yaml"
    rules.write_text("- {name: heap-growth, kind: HeapGrowth, window: 20s, minGrowth: 8Mi}\n")
    with GoTarget(gotarget_binary, "heap-leak", rate=2 * 1024 * 1024, log_dir=work) as target:
        run = run_watch(
            [target.url, "--interval", "1s", "--rules", str(rules), "--exit-on-breach", "--duration", "120s"],
            work / "store",
            timeout_seconds=180,
        )
    assert run.returncode == 3, run.explain()
    (capture,) = run.of("capture")
    return pathlib.Path(capture["location"].removeprefix("file://"))


def test_the_manifest_lists_the_report_with_its_digest(capture_dir: pathlib.Path) -> None:
    manifest = json.loads((capture_dir / "manifest.json").read_text())
    (entry,) = [f for f in manifest["files"] if f["name"] == "report.html"]
    data = (capture_dir / "report.html").read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
    assert entry["format"] == "html" and manifest["errors"] == []


def test_the_report_opens_offline_and_draws_chart_table_and_flame_graph(capture_dir: pathlib.Path) -> None:
    page = capture_dir / "report.html"
    out = OUTPUT / "report"
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "heap-growth-report.png"
    shot.unlink(missing_ok=True)
    with recording_proxy() as (proxy, seen):
        dom = run_chromium(page, proxy, "--dump-dom").stdout
        run_chromium(page, proxy, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}")
    (out / "heap-growth-report.html").write_bytes(page.read_bytes())
    assert seen == [], f"the report made requests: {seen}"

    # The DOM as the browser built it: the chart's line, the heap table naming the leak, the flame frames.
    assert re.search(r'<polyline class="series" points="[\d.]+,[\d.]+ [\d.]+,[\d.]+', dom)
    heap_table = dom[dom.index('<table class="heap">') :]
    assert "main.retainRecords" in heap_table[: heap_table.index("</table>")]
    flame = dom[dom.index('<svg class="flame"') :]
    names = re.findall(r"<title>([^<:]+): \+", flame[: flame.index("</svg>")])
    assert "main.retainRecords" in names and len(names) >= 3

    image = read_png(shot.read_bytes())
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    line = image.where(_rgb(LINE_COLOUR))
    window = image.where(_rgb(WINDOW_COLOUR))
    threshold = image.where(_rgb(THRESHOLD_COLOUR))
    flame_colours = {_rgb(frame_colour(n)) for n in names if n != "all"}
    flame_px = [p for c in flame_colours for p in image.where(c)]
    assert len(line) > 200, f"the series line is not painted ({len(line)} px of {LINE_COLOUR})"
    assert len(window) > 5000, f"the window is not shaded ({len(window)} px)"
    assert len(threshold) > 100, f"the threshold/breach lines are not painted ({len(threshold)} px)"
    assert len(flame_px) > 5000, f"the flame graph is not painted ({len(flame_px)} px)"
    # The line runs across the window (the series that fired is drawn inside it), and the flame graph
    # is painted below the chart.
    wx0, wx1 = min(x for x, _ in window), max(x for x, _ in window)
    assert any(wx0 < x < wx1 for x, _ in line)
    assert min(y for _, y in flame_px) > max(y for _, y in window)
