"""`memorywatch watch` with 40-second windows for more than four minutes against Go services that only look
leaky for a while, and against leaks shaped otherwise than a steady rise.

Look-alikes (none may breach): a cache that warms up over about a window and then evicts as fast as it
inserts; a load ramp served by short-lived goroutines that hold a buffer each (count and live heap both
ramp); a one-off large allocation; a map that stays at its high-water mark; a live heap saw-toothing under
GOMEMLIMIT. Leaks (each named by the right rule within two windows, nothing else firing): a heap leak in
steps, one per resync; a slow goroutine leak near the minimum growth; a heap-only leak just above the
minimum while the goroutine count stays flat. A busy service allocates, so every target makes garbage too.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import time
from typing import Any

import pytest

from support.watch import WatchRun, run_watch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WINDOW_SECONDS = 40
WATCH_SECONDS = 260  # more than four minutes
MiB = 1 << 20
RULES = """
- {name: goroutine-leak, kind: GoroutineGrowth, window: 40s, minGrowth: "300"}
- {name: heap-growth, kind: HeapGrowth, window: 40s, minGrowth: 16Mi}
- {name: finalizer-backlog, kind: FinalizerBacklog, window: 40s, minGrowth: "5000"}
- {name: non-heap-growth, kind: NonHeapGrowth, window: 40s, minGrowth: 16Mi}
"""
CHURN = 16 * MiB

# name -> (gotarget flags, the rule that must fire or None)
SCENARIOS: dict[str, tuple[dict[str, Any], str | None]] = {
    "cache-warmup": ({"mode": "cache-warmup", "rate": 2 * MiB, "ramp": "15s"}, None),
    "load-ramp": ({"mode": "load-ramp", "max": 1500, "ramp": "40s"}, None),
    "one-off": ({"mode": "one-off", "max": 64 * MiB, "leak_after": "60s"}, None),
    "map-high-water": ({"mode": "map-high-water", "max": 64 * MiB, "ramp": "15s"}, None),
    "memlimit-sawtooth": ({"mode": "memlimit-sawtooth", "max": 48 * MiB, "ramp": "15s"}, None),
    "step-leak": ({"mode": "step-leak", "rate": 1 * MiB, "ramp": "8s"}, "heap-growth"),
    "slow-goroutine-leak": ({"mode": "goroutine-leak", "rate": 9}, "goroutine-leak"),  # 1.2x of 300/40s
    "heap-only-leak": ({"mode": "heap-leak", "rate": 0.6 * MiB}, "heap-growth"),  # 1.5x of 16Mi/40s
}


@pytest.fixture(scope="module")
def batch(
    tmp_path_factory: pytest.TempPathFactory, gotarget_binary: pathlib.Path
) -> tuple[WatchRun, dict[str, str], float]:
    from support.gotargets import GoTarget

    work = tmp_path_factory.mktemp("lookalikes")
    (work / "rules.yaml").write_text(RULES)
    targets: dict[str, GoTarget] = {}
    try:
        for name, (flags, _) in SCENARIOS.items():
            flags = dict(flags)
            mode = flags.pop("mode")
            targets[name] = GoTarget(gotarget_binary, mode, log_dir=work, churn=CHURN, **flags).start()
        started = time.time()
        run = run_watch(
            [
                *(t.url for t in targets.values()),
                "--interval",
                "2s",
                "--rules",
                str(work / "rules.yaml"),
                "--duration",
                f"{WATCH_SECONDS}s",
            ],
            work / "store",
            timeout_seconds=WATCH_SECONDS + 240,
        )
    finally:
        for t in targets.values():
            t.stop()
    assert run.returncode == 0, run.explain()
    return run, {name: t.url.split("://", 1)[1] for name, t in targets.items()}, started


def _ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _label(run: WatchRun, hostport: str) -> str:
    labels = {e["target"] for e in run.events if hostport in e["target"]}
    assert len(labels) == 1, f"cannot find target {hostport} in {labels}"
    return labels.pop()


@pytest.mark.parametrize("scenario", [s for s, (_, rule) in SCENARIOS.items() if rule is None])
def test_look_alike_never_breaches(batch: tuple[WatchRun, dict[str, str], float], scenario: str) -> None:
    run, hostports, _ = batch
    target = _label(run, hostports[scenario])
    assert len(run.of("sample", target)) >= WATCH_SECONDS / 2 * 0.7, "watched the whole time"
    breaches = run.of("breach", target)
    assert breaches == [], "\n".join(f"{b['rule']}: {b['message']}" for b in breaches)


@pytest.mark.parametrize("scenario", [s for s, (_, rule) in SCENARIOS.items() if rule is not None])
def test_leak_is_named_by_the_right_rule_within_two_windows(
    batch: tuple[WatchRun, dict[str, str], float], scenario: str
) -> None:
    run, hostports, _ = batch
    rule = SCENARIOS[scenario][1]
    target = _label(run, hostports[scenario])
    breaches = run.of("breach", target)
    fired = {b["rule"] for b in breaches}
    assert fired == {rule}, f"{scenario}: fired {fired}\n{run.explain()}"
    first = min(_ts(b["time"]) for b in breaches)
    # Two windows of watching this target: from its first sample (the CLI's own start-up is not watching).
    watched_from = min(_ts(s["time"]) for s in run.of("sample", target))
    assert first - watched_from <= 2 * WINDOW_SECONDS + 10, f"{rule} took {first - watched_from:.0f}s"
    assert "Confirmed by: " in breaches[0]["message"], "the breach says which confirmation signals held"
