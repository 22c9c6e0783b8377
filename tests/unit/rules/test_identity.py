"""Goroutine identity confirms or holds back a goroutine-count breach: leaked goroutines keep their IDs across
debug=2 dumps, load-driven ones turn over. Dumps are never asked of a target past the goroutine ceiling."""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.rules.synth import FIXTURES, T0, spec

from memorywatch.pprof.goroutine_ids import (
    HASH_SPACE,
    MAX_SAMPLED_IDS,
    parse_goroutine_ids,
    persistence,
    sample_ids,
)
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import Probe, RuleKind
from memorywatch.samples import Sample

WINDOW = 900.0
RULE = spec(RuleKind.GOROUTINE_GROWTH, "goroutine-leak", window_seconds=WINDOW)  # min growth 2000


def test_a_real_dump_gives_every_goroutine_id() -> None:
    text = (FIXTURES / "goroutine_debug2.txt").read_bytes()
    ids = parse_goroutine_ids(text)
    headers = [line for line in text.splitlines() if line.startswith(b"goroutine ") and line.endswith(b":")]
    assert ids.total == len(headers) > 0
    assert ids.threshold == HASH_SPACE and len(ids.ids) == ids.total, "a small dump is kept whole"
    assert 1 in ids.ids, "goroutine 1 (main) is in every dump"


def test_large_dumps_are_sampled_consistently() -> None:
    a = sample_ids(range(1, 20_001))
    b = sample_ids(range(10_001, 40_001))
    assert a.total == 20_000 and len(a.ids) <= MAX_SAMPLED_IDS * 1.2
    threshold = min(a.threshold, b.threshold)
    shared = a.at(threshold) & b.at(threshold)
    scale = HASH_SPACE / threshold
    assert 8_000 <= len(shared) * scale <= 12_000, "10,000 goroutines are in both"


def test_persistence_tells_kept_growth_from_turnover() -> None:
    base = list(range(1, 101))
    leak = persistence(sample_ids(base), sample_ids(base + list(range(101, 601))), sample_ids(range(1, 1201)))
    assert leak.grown == 500 and leak.share_of_growth == pytest.approx(1.0, abs=0.25)  # sampled at 512
    ramp = persistence(
        sample_ids(base + list(range(1000, 1100))),
        sample_ids(base + list(range(5000, 5600))),
        sample_ids(base + list(range(9000, 9900))),
    )
    assert ramp.grown == 500 and ramp.share_of_growth == 0.0


def ramp_count(t: float) -> int:
    return 500 + round(3000 * t / WINDOW)  # 3000 per window: well past the 2000 minimum


def run(ids_at: dict[str, object]) -> tuple[list[object], TargetJudge]:
    """Feed a steady count rise; answer dump probes with `ids_at['make'](t, count)`."""
    judge = TargetJudge([RULE])
    breaches: list[object] = []
    for i in range(int(WINDOW * 1.5 / 30) + 1):
        t = i * 30.0
        sample = Sample(target="pod", time=T0 + t, goroutines=ramp_count(t))
        if Probe.GOROUTINE_DUMP in judge.wants():
            sample = dataclasses.replace(sample, goroutine_ids=ids_at["make"](t, ramp_count(t)))  # type: ignore[operator]
        breaches.extend(judge.observe(sample).breaches)
    return breaches, judge


def test_growth_that_keeps_its_ids_fires_and_says_identity_confirmed_it() -> None:
    breaches, _ = run({"make": lambda t, n: sample_ids(range(1, n + 1))})
    assert breaches
    breach = breaches[0]
    assert "goroutine identity (" in breach.message and "still had the same IDs" in breach.message
    assert breach.evidence["goroutine_identity"]["share_of_growth_kept"] >= 0.9
    assert any("goroutine identity" in s for s in breach.evidence["confirmed_by"])


def test_growth_that_turns_over_is_held_back_and_says_why() -> None:
    fresh = {"next": 10_000}

    def turnover(t: float, n: int) -> object:
        start = fresh["next"]
        fresh["next"] += n
        return sample_ids([*range(1, 101), *range(start, start + n - 100)])  # 100 long-lived, the rest new

    breaches, judge = run({"make": turnover})
    assert breaches == []
    detail = judge.rule_states()["goroutine-leak"].detail
    assert "the goroutines turn over" in detail, detail


def test_no_dump_is_asked_of_a_target_past_the_goroutine_ceiling() -> None:
    judge = TargetJudge([RULE])
    asked = set()
    for i in range(40):
        t = i * 30.0
        judge.observe(Sample(target="pod", time=T0 + t, goroutines=11_000 + 200 * i))
        asked |= judge.wants()
    assert Probe.GOROUTINE_STACKS in asked, "the grouped debug=1 profile is still fine"
    assert Probe.GOROUTINE_DUMP not in asked
