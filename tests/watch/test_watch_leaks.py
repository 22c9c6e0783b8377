"""`memorywatch watch` against real leaking and healthy Go processes, with 40-second windows.

We test these aspects: each leak is named by the right rule within two windows; no rule fires that the
behaviour does not justify; a bursty healthy service runs three minutes without a breach; every captured
profile opens in `go tool pprof`; the summaries name the leaking function of the target's source.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import pytest

from support.watch import WatchRun, go_tool_pprof_top, run_watch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
]  # the first test also pays for the shared 3-minute watch

WINDOW_SECONDS = 40
RULES = """
- {name: goroutine-leak, kind: GoroutineGrowth, window: 40s, minGrowth: "300"}
- {name: heap-growth, kind: HeapGrowth, window: 40s, minGrowth: 16Mi}
- {name: finalizer-backlog, kind: FinalizerBacklog, window: 40s, minGrowth: "5000"}
- {name: non-heap-growth, kind: NonHeapGrowth, window: 40s, minGrowth: 16Mi}
"""

# target name -> (gotarget flags, the rule that must fire, the rules the behaviour also justifies)
SCENARIOS: dict[str, tuple[dict[str, Any], str | None, set[str]]] = {
    "goroutines": ({"mode": "goroutine-leak", "rate": 20}, "goroutine-leak", set()),
    # Leaking services also make garbage, so they collect on their own: MemoryWatch forces a GC at most every
    # 2 minutes (the runtime's own period), and a 40 s window needs 6 GC points.
    "heap": ({"mode": "heap-leak", "rate": 1024 * 1024, "churn": 16 << 20}, "heap-growth", set()),
    "cgo": ({"mode": "cgo-leak", "rate": 1024 * 1024, "metrics": True}, "non-heap-growth", set()),
    "cgo-maxrss": ({"mode": "cgo-leak", "rate": 1024 * 1024}, "non-heap-growth", set()),
    # A blocked finalizer keeps its objects alive, so live-heap growth is justified too (if big enough).
    "finalizer": (
        {"mode": "finalizer-leak", "rate": 500, "churn": 16 << 20},
        "finalizer-backlog",
        {"heap-growth"},
    ),
    "healthy": ({"mode": "healthy"}, None, set()),
}
HEALTHY_SECONDS = 180


@pytest.fixture(scope="module")
def batch(
    tmp_path_factory: pytest.TempPathFactory, gotarget_binary: pathlib.Path
) -> tuple[WatchRun, dict[str, str], float]:
    """One watch over every scenario at once (they are independent processes), for three minutes."""
    from support.gotargets import GoTarget

    work = tmp_path_factory.mktemp("watch-batch")
    rules = work / "rules.yaml"
    rules.write_text(RULES)
    targets: dict[str, GoTarget] = {}
    try:
        for name, (flags, _, _) in SCENARIOS.items():
            flags = dict(flags)
            mode = flags.pop("mode")
            targets[name] = GoTarget(gotarget_binary, mode, log_dir=work, **flags).start()
        urls = {name: t.url for name, t in targets.items()}
        started = time.time()
        run = run_watch(
            [*urls.values(), "--interval", "2s", "--rules", str(rules), "--duration", f"{HEALTHY_SECONDS}s"],
            work / "store",
            timeout_seconds=HEALTHY_SECONDS + 120,
        )
    finally:
        for t in targets.values():
            t.stop()
    assert run.returncode == 0, run.explain()
    return run, {name: url.split("://", 1)[1] for name, url in urls.items()}, started


def _target_label(run: WatchRun, hostport: str) -> str:
    labels = {e["target"] for e in run.events if hostport in e["target"]}
    assert len(labels) == 1, f"cannot find target {hostport} in {labels}"
    return labels.pop()


@pytest.mark.parametrize("scenario", [s for s, (_, rule, _) in SCENARIOS.items() if rule])
def test_leak_is_named_by_the_right_rule_within_two_windows(
    batch: tuple[WatchRun, dict[str, str], float], scenario: str
) -> None:
    run, hostports, _ = batch
    _, rule, justified = SCENARIOS[scenario]
    target = _target_label(run, hostports[scenario])
    breaches = run.of("breach", target)
    fired = {b["rule"] for b in breaches}
    assert rule in fired, f"{scenario}: expected {rule}, fired {fired}\n{run.explain()}"
    first = min(_ts(b["time"]) for b in breaches if b["rule"] == rule)
    # Two windows of watching this target: from its first sample (the CLI's own start-up is not watching).
    watched_from = min(_ts(s["time"]) for s in run.of("sample", target))
    assert first - watched_from <= 2 * WINDOW_SECONDS + 10, f"{rule} took {first - watched_from:.0f}s"
    assert fired <= {rule} | justified, (
        f"{scenario}: unjustified rules fired: {fired - {rule} - justified}\n{run.explain()}"
    )
    evidence = next(b for b in breaches if b["rule"] == rule)
    assert evidence["message"] and evidence["evidence"], "every verdict carries its evidence"


def test_healthy_bursty_service_runs_three_minutes_without_a_breach(
    batch: tuple[WatchRun, dict[str, str], float],
) -> None:
    run, hostports, _ = batch
    target = _target_label(run, hostports["healthy"])
    samples = run.of("sample", target)
    assert len(samples) >= HEALTHY_SECONDS / 2 * 0.8, "the healthy target was really watched the whole time"
    assert run.of("breach", target) == [], run.explain()


def _captures(run: WatchRun, hostport: str) -> list[dict[str, Any]]:
    return run.of("capture", _target_label(run, hostport))


@pytest.mark.parametrize("scenario", [s for s, (_, rule, _) in SCENARIOS.items() if rule])
def test_every_captured_profile_opens_in_go_tool_pprof(
    batch: tuple[WatchRun, dict[str, str], float], scenario: str
) -> None:
    run, hostports, _ = batch
    caps = _captures(run, hostports[scenario])
    assert caps, f"{scenario}: no capture\n{run.explain()}"
    folder = pathlib.Path(caps[0]["location"].removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert {"heap.pb.gz", "goroutine.pb.gz", "goroutine-stacks.txt", "manifest.json"} <= names | {
        "manifest.json"
    }
    assert set(caps[0]["files"]) == names | {"manifest.json"}
    for f in manifest["files"]:
        data = (folder / f["name"]).read_bytes()
        assert len(data) == f["size"]
        if f["name"].endswith(".pb.gz"):
            go_tool_pprof_top(folder / f["name"])
    assert "goroutine " in (folder / "goroutine-stacks.txt").read_text()[:200]


def test_heap_leak_summary_names_the_leaking_function(batch: tuple[WatchRun, dict[str, str], float]) -> None:
    run, hostports, _ = batch
    cap = _captures(run, hostports["heap"])[0]
    assert "main.retainRecords" in cap["summary"], cap["summary"]
    folder = pathlib.Path(cap["location"].removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["heap"]["topGrowth"][0]["function"] == "main.retainRecords"
    # The diff against the baseline is what a person runs next; it must work as the summary says.
    top = go_tool_pprof_top(folder / "heap.pb.gz", "-diff_base", str(folder / "heap-baseline.pb.gz"))
    assert "main.retainRecords" in top


def test_goroutine_leak_summary_names_the_leaking_function(
    batch: tuple[WatchRun, dict[str, str], float],
) -> None:
    run, hostports, _ = batch
    cap = _captures(run, hostports["goroutines"])[0]
    assert "main.blockForever" in cap["summary"] or "main.leakGoroutines" in cap["summary"], cap["summary"]
    breach = next(
        b
        for b in run.of("breach", _target_label(run, hostports["goroutines"]))
        if b["rule"] == "goroutine-leak"
    )
    assert "main.blockForever" in json.dumps(breach["evidence"]) or "main.blockForever" in breach["message"]


def _ts(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
