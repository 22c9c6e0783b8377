"""We test MemoryLimit as a forecast: it fires when the sustained rate reaches the limit within the horizon
(not before), at once near the limit, never on a flat 80%, and tells why when it cannot judge."""

from __future__ import annotations

import pytest
from tests.unit.rules.synth import MIB, T0, feed, spec, stream

from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import RuleKind

LIMIT = 1024 * MIB
RULE = spec(RuleKind.MEMORY_LIMIT, "near-limit", window_seconds=900.0, horizon_seconds=1800.0)


def rss(value, limit=LIMIT):  # type: ignore[no-untyped-def]
    return lambda i, t: {"rss_bytes": round(value(t)), "rss_source": "proc", "limit_bytes": limit}


def test_fires_when_the_limit_is_within_the_horizon_and_not_before() -> None:
    # 300 MiB rising 10 MiB/min: 724 MiB of headroom is 72m away at first, 30m away at t = 42m
    run = feed(TargetJudge([RULE]), stream(3 * 3600, 30, rss(lambda t: 300 * MIB + 10 * MIB * t / 60)))
    breach = run.breaches[0]
    elapsed = breach.time - T0
    assert 42 * 60 <= elapsed <= 43 * 60
    evidence = breach.evidence
    assert evidence["trigger"] == "forecast"
    assert evidence["limit_bytes"] == LIMIT
    assert evidence["slope_per_second"] == pytest.approx(10 * MIB / 60, rel=0.02)
    assert evidence["eta_seconds"] == pytest.approx(
        (LIMIT - evidence["current_bytes"]) / (10 * MIB / 60), rel=0.02
    )
    assert evidence["eta_seconds"] <= 1800
    assert "limit is reached in about" in breach.message


def test_usage_near_the_limit_fires_at_once() -> None:
    run = feed(TargetJudge([RULE]), stream(60, 30, rss(lambda t: 0.97 * LIMIT)))
    breach = run.breaches[0]
    assert breach.time == T0
    assert breach.evidence["trigger"] == "near-limit"
    assert "97% of its 1 GiB limit" in breach.message


def test_a_flat_eighty_percent_never_fires() -> None:
    run = feed(TargetJudge([RULE]), stream(3 * 3600, 30, rss(lambda t: 0.8 * LIMIT + (t % 120) * 1000)))
    assert run.breaches == []


def test_without_a_limit_it_is_inactive_with_a_note() -> None:
    run = feed(TargetJudge([RULE]), stream(600, 30, rss(lambda t: 100 * MIB, limit=None)))
    assert run.notes == ["near-limit: MemoryLimit inactive: the target has no memory limit"]


def test_without_current_rss_it_judges_go_memory_and_says_so() -> None:
    def make(i: int, t: float) -> dict[str, object]:
        sys = round(300 * MIB + 10 * MIB * t / 60)
        return {"memstats": MemStats(sys=sys, heap_released=0, max_rss=sys), "limit_bytes": LIMIT}

    run = feed(TargetJudge([RULE]), stream(3 * 3600, 30, make))
    assert any("judges Sys − HeapReleased" in note for note in run.notes)
    assert run.breaches[0].evidence["source"] == "sys-heap-released"
    assert "Memory (Sys − HeapReleased)" in run.breaches[0].message
