"""The engine writes report.html into each capture, before the manifest, and a report never costs a capture.

Captures are taken by the engine's own `capture()` from a real heap-leaking Go process into a real
FilesystemStore. Aspects: report.html is listed in the manifest with its sha256 and names the leaking
function; `captures show` points to it; when rendering crashes (a failure real data cannot be made to
produce, so the renderer is replaced by a mock that raises) the capture still lands whole, with a note.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import subprocess
import time
from typing import Any

import pytest

from memorywatch.engine import capture as capture_module
from memorywatch.engine.capture import DEFAULT_PROFILES, CaptureRequest, CaptureResult, capture, take_baseline
from memorywatch.rules.model import Breach, RuleKind
from memorywatch.scrape import Scraper, TargetConfig
from memorywatch.store import FilesystemStore
from support.gotargets import GoTarget
from support.watch import memorywatch_cmd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def _take(url: str, store: FilesystemStore) -> CaptureResult:
    target = TargetConfig(url=url)
    async with Scraper() as scraper:
        baseline = await take_baseline(scraper, target, time.time())
        await asyncio.sleep(2.5)  # the target retains 4 MiB/s meanwhile
        breach = Breach(
            rule="heap-growth",
            kind=RuleKind.HEAP_GROWTH,
            target=target.display_name,
            time=time.time(),
            message="live heap kept growing for 2.5s (a breach made up by this test)",
            evidence={"windowSeconds": 2.5},
        )
        request = CaptureRequest(
            namespace="shop",
            memorywatch="checkout-watch",
            pod="checkout-0",
            target=target,
            breaches=[breach],
            profiles=DEFAULT_PROFILES,
            recent=[],
            baseline=baseline,
        )
        return await capture(scraper, store, request, time.time())


@pytest.fixture
def leaking(gotarget_binary: pathlib.Path, tmp_path: pathlib.Path) -> Any:
    with GoTarget(gotarget_binary, "heap-leak", rate=4 * 1024 * 1024, log_dir=tmp_path) as target:
        yield target


def test_the_capture_holds_its_report(leaking: GoTarget, tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path / "store")
    result = asyncio.run(_take(leaking.url, store))
    folder = pathlib.Path(result.location.removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    (entry,) = [f for f in manifest["files"] if f["name"] == "report.html"]
    page = (folder / "report.html").read_bytes()
    assert entry["sha256"] == hashlib.sha256(page).hexdigest() and entry["format"] == "html"
    assert "report.html" in result.files and manifest["errors"] == []
    text = page.decode()
    assert "main.retainRecords" in text and '<svg class="flame"' in text
    # No samples were given, so the chart says so instead of drawing nothing silently.
    assert "No samples of this series were recorded" in text

    shown = subprocess.run(
        [*memorywatch_cmd(), "captures", "show", str(tmp_path / "store"), "checkout-0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    assert f"report: {folder / 'report.html'}" in shown.stdout


def test_a_renderer_crash_mock_keeps_the_capture_whole(
    leaking: GoTarget, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crashing_render_mock(*_: Any, **__: Any) -> str:
        raise RuntimeError("a bug in the renderer")

    monkeypatch.setattr(capture_module, "render_report_job", crashing_render_mock)
    result = asyncio.run(_take(leaking.url, FilesystemStore(tmp_path / "store")))
    folder = pathlib.Path(result.location.removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert {"heap.pb.gz", "heap-baseline.pb.gz", "goroutine.pb.gz", "goroutine-stacks.txt"} <= names
    assert "report.html" not in names and not (folder / "report.html").exists()
    assert any(e.startswith("report.html: not rendered") for e in manifest["errors"])
    assert "main.retainRecords" in result.summary
