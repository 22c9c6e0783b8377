"""We test the per-target judge: restarts reset series and warm-up but keep cooldowns; cooldowns silence a
repeat and survive a new judge through restore_cooldowns; empty samples never raise; memory stays bounded."""

from __future__ import annotations

import dataclasses
import itertools

from tests.unit.rules.synth import T0, feed, feed_with_stacks, fixture_profile, relocated, spec, stream

from memorywatch.api.rules_config import default_rules
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules import series
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import Probe, RuleKind
from memorywatch.samples import Sample

WINDOW = 900.0
RULE = spec(RuleKind.GOROUTINE_GROWTH, "goroutine-leak", window_seconds=WINDOW, min_growth=2000)


def leaking(i: int, t: float) -> dict[str, object]:
    return {"goroutines": 100 + 100 * i, "memstats": MemStats(num_gc=i, total_alloc=1000 * i, mallocs=10 * i)}


def test_cooldown_silences_a_repeat_until_it_ends() -> None:
    run = feed(TargetJudge([RULE], default_cooldown_seconds=1800), stream(3 * 3600, 30, leaking))
    times = [b.time - T0 for b in run.breaches]
    assert times[0] == WINDOW
    assert all(later - earlier >= 1800 for earlier, later in itertools.pairwise(times))
    assert len(times) >= 3, "a leak that goes on is reported again after each cooldown"
    assert run.breaches[0].evidence["cooldown_seconds"] == 1800


def test_a_rule_can_override_the_cooldown() -> None:
    rule = dataclasses.replace(RULE, cooldown_seconds=600)
    times = [b.time - T0 for b in feed(TargetJudge([rule]), stream(2 * 3600, 30, leaking)).breaches]
    assert times[1] - times[0] == 600


def test_restored_cooldowns_survive_a_new_judge() -> None:
    samples = stream(3 * 3600, 30, leaking)
    first = TargetJudge([RULE])
    feed(first, samples[:40])
    saved = first.cooldowns()
    assert saved == {"goroutine-leak": T0 + WINDOW + 1800}
    # the operator restarts: a fresh judge sees the same (still leaking) target
    second = TargetJudge([RULE])
    second.restore_cooldowns({**saved, "gone-rule": T0 + 99_999})
    run = feed(second, samples[40:])
    assert run.breaches and run.breaches[0].time >= T0 + WINDOW + 1800
    assert "gone-rule" not in second.cooldowns()


def test_a_restart_resets_series_and_warm_up_but_keeps_the_cooldown() -> None:
    judge = TargetJudge([RULE], default_cooldown_seconds=600)
    before = feed(judge, stream(1200, 30, leaking))
    assert len(before.breaches) == 1
    cooldown = judge.cooldowns()
    restart_at = T0 + 1230
    samples = stream(3600, 30, leaking, start=restart_at)
    first_judgement = judge.observe(samples[0])
    assert first_judgement.restarted
    assert any("num_gc went down" in note for note in first_judgement.notes)
    assert judge.cooldowns() == cooldown, "a restart of the target does not forget the cooldown"
    assert judge.status()["goroutine-leak"].startswith("warming up")
    after = feed(judge, samples[1:])
    assert not any(j.restarted for _, j in after.judgements)
    # the leak goes on in the new process, but it needs a full window of its own data first
    assert after.breaches[0].time - restart_at >= WINDOW


def test_stacks_at_other_addresses_mean_a_new_process() -> None:
    original = fixture_profile("goroutine_debug1_t0.txt")
    judge = TargetJudge([RULE])
    plain = lambda i, t: {"goroutines": 50}  # noqa: E731
    samples = stream(120, 30, plain)
    judge.observe(dataclasses.replace(samples[0], goroutine_profile=original))
    same = judge.observe(
        dataclasses.replace(samples[1], goroutine_profile=fixture_profile("goroutine_debug1_t1.txt"))
    )
    assert not same.restarted, "later snapshots of one process share their PCs"
    moved = judge.observe(dataclasses.replace(samples[2], goroutine_profile=relocated(original, 0x1000)))
    assert moved.restarted


def test_empty_samples_never_raise_and_every_rule_says_why_it_is_idle() -> None:
    judge = TargetJudge([*default_rules(), spec(RuleKind.THRESHOLD, "t", expression="goroutines > 1")])
    run = feed(judge, [Sample(target="pod", time=T0 + i) for i in range(5)])
    assert run.breaches == []
    noted = {note.split(":", 1)[0] for note in run.notes}
    assert noted == {
        "goroutine-leak",
        "heap-growth",
        "finalizer-backlog",
        "non-heap-growth",
        "near-limit",
        "t",
    }
    assert len(run.notes) == 6, "each note is said once, not on every sample"
    assert judge.status()["near-limit"] == "inactive: the target has no memory limit"
    assert judge.wants() == frozenset()


def test_an_older_sample_is_ignored_with_a_note() -> None:
    judge = TargetJudge([RULE])
    judge.observe(Sample(target="pod", time=T0 + 10, goroutines=5))
    late = judge.observe(Sample(target="pod", time=T0 + 5, goroutines=5000))
    assert late.breaches == () and "ignored" in late.notes[0]


def test_status_shows_state_and_fitted_growth() -> None:
    judge = TargetJudge([RULE])
    samples = stream(900, 30, leaking)
    feed(judge, samples[:11])
    assert judge.status()["goroutine-leak"] == "warming up: +3,000 goroutines over 15m"
    feed(judge, samples[11:])
    state = judge.rule_states()["goroutine-leak"]
    assert state.state == "cooling down" and state.unit == "goroutines"


def test_memory_stays_bounded_at_one_second_scrapes() -> None:
    stuck = fixture_profile("goroutine_debug1_t0.txt")
    judge = TargetJudge([RULE])
    samples = stream(2000, 1, lambda i, t: {"goroutines": 100 + 3 * i})
    run, fetched = feed_with_stacks(judge, samples, lambda n: stuck)
    rule = judge._rules[0]  # the one place a test looks inside: memory use is not visible from outside
    assert len(rule.series) <= series.MAX_POINTS_PER_WINDOW * (1 + series.RETENTION_MARGIN) + 2  # type: ignore[attr-defined]
    assert len(rule.snapshots) <= 3  # type: ignore[attr-defined]
    assert fetched < 2000 / (WINDOW / 8) + 2, "stacks stay spaced out even at a 1s interval"
    assert run.breaches


def test_wants_is_empty_before_the_first_sample_and_for_healthy_targets() -> None:
    judge = TargetJudge(default_rules())
    assert judge.wants() == frozenset()
    feed(judge, stream(1800, 30, lambda i, t: {"goroutines": 40 + i % 3}))
    assert Probe.GOROUTINE_STACKS not in judge.wants()


def test_a_rule_cooling_down_asks_for_no_stacks_until_just_before_it_ends() -> None:
    judge = TargetJudge([RULE], default_cooldown_seconds=1800)
    run, _ = feed_with_stacks(
        judge, stream(3600, 30, leaking), lambda n: fixture_profile("goroutine_debug1_t0.txt")
    )
    fired_at = run.breaches[0].time
    fetched_at = [s.time for s, _ in run.judgements if s.goroutine_profile is not None]
    quiet = [t for t in fetched_at if fired_at < t < fired_at + 1800 - 300]
    assert quiet == []
    assert any(fired_at + 1800 - 300 <= t <= fired_at + 1800 for t in fetched_at)


def test_a_restart_whose_counters_caught_up_is_seen_by_the_process_start_time() -> None:
    """A crash loop of the same (non-PIE) binary: the new process's counters are already past the old one's at
    the next scrape and its stacks sit at the same addresses, so only the start time from /metrics tells."""
    judge = TargetJudge([RULE])
    started = int(T0) - 60

    def sample(i: int, start: int) -> Sample:
        return Sample(
            target="pod",
            time=T0 + 30 * i,
            goroutines=50,
            memstats=MemStats(num_gc=10 + i, total_alloc=(1 + i) << 20),
            process_start_seconds=start,
        )

    assert not any(judge.observe(sample(i, started)).restarted for i in range(3))
    restarted = judge.observe(sample(3, int(T0) + 75))
    assert restarted.restarted
    assert any("process_start_time_seconds changed" in note for note in restarted.notes)
    # A start time that wobbles by a second (rounding in an exporter) is the same process.
    assert not judge.observe(sample(4, int(T0) + 76)).restarted
