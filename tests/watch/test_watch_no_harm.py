"""Do no harm, on real Go processes: `memorywatch watch` with the built-in rules never forces a GC on an idle
target, and a target with 200,000 goroutines is never dumped with `goroutine?debug=2` (a stop-the-world dump
whose pause grows with the goroutine count) even when its goroutine leak is caught and captured.

The targets log every request they serve (`-log-requests`), so the tests see exactly what was asked of them;
`NumForcedGC` in the target's own MemStats counts every `runtime.GC()` any `gc=1` request caused.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import re

import httpx
import pytest

from support.gotargets import GoTarget
from support.watch import WatchRun, run_watch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Longer than 90 s: FinalizerBacklog's built-in 15m window used to call its GC point stale after 90 s and
# force a GC on any target whose HeapObjects had not shrunk, i.e. on every idle one.
IDLE_SECONDS = 150
LEAK_RULES = '- {name: goroutine-leak, kind: GoroutineGrowth, window: 40s, minGrowth: "300"}\n'
LEAK_SECONDS = 100


def _memstat(target: GoTarget, field: str) -> int:
    text = httpx.get(target.pprof_url + "heap", params={"debug": "1"}, timeout=60, trust_env=False).text
    match = re.search(rf"^# {field} = (\d+)$", text, re.MULTILINE)
    assert match, f"{field} missing from heap?debug=1"
    return int(match.group(1))


def _requests(target: GoTarget) -> list[str]:
    return re.findall(r"^request GET (\S+)$", target.log_text(), re.MULTILINE)


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, gotarget_binary: pathlib.Path
) -> tuple[tuple[WatchRun, GoTarget], tuple[WatchRun, GoTarget]]:
    work = tmp_path_factory.mktemp("no-harm")
    (work / "rules.yaml").write_text(LEAK_RULES)
    idle = GoTarget(gotarget_binary, "", log_dir=work / "idle", log_requests=True)
    crowded = GoTarget(
        gotarget_binary, "goroutine-leak", rate=2500, max=200_000, log_dir=work / "crowded", log_requests=True
    )
    try:
        idle.start()
        crowded.start()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            idle_run = pool.submit(
                run_watch,
                [idle.url, "--interval", "5s", "--duration", f"{IDLE_SECONDS}s"],
                work / "idle-store",
                IDLE_SECONDS + 120,
            )
            crowded_run = pool.submit(
                run_watch,
                [
                    crowded.url,
                    "--interval",
                    "3s",
                    "--rules",
                    str(work / "rules.yaml"),
                    "--duration",
                    f"{LEAK_SECONDS}s",
                ],
                work / "crowded-store",
                LEAK_SECONDS + 180,
            )
            idle_result, crowded_result = idle_run.result(), crowded_run.result()
        forced = _memstat(idle, "NumForcedGC")
        assert forced == 0, f"the idle target was forced to GC {forced} time(s): {_requests(idle)}"
    finally:
        idle.stop()
        crowded.stop()
    return (idle_result, idle), (crowded_result, crowded)


def test_built_in_rules_never_force_a_gc_on_an_idle_target(runs) -> None:  # type: ignore[no-untyped-def]
    (run, target), _ = runs
    assert run.returncode == 0, run.explain()
    asked = _requests(target)
    heap_scrapes = [r for r in asked if "/heap?" in r]
    assert len(heap_scrapes) >= IDLE_SECONDS / 5 * 0.8, "the idle target was really watched the whole time"
    assert not [r for r in asked if "gc=1" in r], asked
    assert run.of("breach") == []


def test_a_200k_goroutine_target_is_caught_but_never_dumped_with_debug_2(runs) -> None:  # type: ignore[no-untyped-def]
    _, (run, target) = runs
    assert run.returncode == 0, run.explain()
    breaches = [b for b in run.of("breach") if b["rule"] == "goroutine-leak"]
    assert breaches, f"the count-based verdict stands\n{run.explain()}"
    asked = _requests(target)
    assert not [r for r in asked if "debug=2" in r], "a stop-the-world stack dump was taken"
    captures = run.of("capture")
    assert captures, run.explain()
    folder = pathlib.Path(captures[0]["location"].removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert "goroutine-stacks.txt" not in names and "goroutine.txt" in names, names
    refusal = next(e for e in manifest["errors"] if e.startswith("goroutine-stacks: "))
    assert "goroutines, above the 50,000 ceiling" in refusal, manifest["errors"]
    counts = [s["goroutines"] for s in run.of("sample") if s.get("goroutines")]
    assert max(counts) >= 150_000, "the target really had that many goroutines"
