"""The action executor (write-ahead cooldown, dry runs, not acting when status cannot be written first), the
lag probe, TargetJudge.update_rules and the pod facts behind restart detection."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.unit.control.fakes import T0, FakeClock, FakeKube, RecordingActions

from memorywatch.actions import Workload
from memorywatch.api.spec import ActionSpec
from memorywatch.control.acting import ActionExecutor, ActionLog, Cooldowns
from memorywatch.control.lag import measure_lag
from memorywatch.control.posting import EventPoster
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import RuleKind, RuleSpec
from memorywatch.samples import Sample
from memorywatch.targets import pod_info

EVICT = ActionSpec(type="EvictPod", cooldown_seconds=600)


def executor(
    kube: FakeKube, clock: FakeClock, actions: RecordingActions, *, status_ok: bool = True
) -> tuple[ActionExecutor, Cooldowns, list[Cooldowns]]:
    cooldowns: Cooldowns = {}
    seen_at_write: list[Cooldowns] = []

    async def write_status() -> None:
        seen_at_write.append(dict(cooldowns))
        if not status_ok:
            raise RuntimeError("status could not be written")

    poster = EventPoster(kube, "ns", "mw", "uid", clock)
    return (
        ActionExecutor(actions, poster, "ns", cooldowns, ActionLog(), write_status, clock),
        cooldowns,
        seen_at_write,
    )


async def test_the_cooldown_is_written_before_acting_and_the_outcome_after() -> None:
    clock, kube = FakeClock(), FakeKube()
    actions = RecordingActions(Workload("Deployment", "shop", "ns"))
    ex, _, writes = executor(kube, clock, actions)
    await ex.after_capture("shop-1", EVICT)
    assert actions.calls == [("EvictPod", "shop-1", False)]
    assert writes[0] == {("Deployment/shop", "EvictPod", "Action"): T0 + 600}, "write-ahead"
    assert [e["result"] for e in ex.log.entries] == ["Done"]
    await ex.after_capture("shop-2", EVICT)
    assert len(actions.calls) == 1, "cooling down"
    assert ex.log.entries[0]["result"] == "Skipped" and "cooling down" in ex.log.entries[0]["message"]


async def test_the_runner_is_told_which_watch_and_which_pod_uid_decided() -> None:
    clock, kube = FakeClock(), FakeKube()
    actions = RecordingActions(Workload("Deployment", "shop", "ns"))
    ex, _, _ = executor(kube, clock, actions)
    ex.watch_uid = "watch-uid"
    ex.pod_uid = {"shop-1": "pod-uid-1"}.get
    await ex.after_capture("shop-1", EVICT)
    context = actions.contexts[0]
    assert context is not None
    assert (context.watch_uid, context.pod_uid, context.cooldown_seconds) == ("watch-uid", "pod-uid-1", 600)


async def test_a_dry_run_writes_no_cooldown() -> None:
    clock, kube = FakeClock(), FakeKube()
    actions = RecordingActions(Workload("Deployment", "shop", "ns"))
    ex, cooldowns, _ = executor(kube, clock, actions)
    await ex.after_capture("shop-1", ActionSpec(type="EvictPod", dry_run=True))
    assert actions.calls == [("EvictPod", "shop-1", True)] and cooldowns == {}
    assert ex.log.entries[0]["result"] == "DryRun"


async def test_no_action_when_the_cooldown_cannot_be_written_first() -> None:
    clock, kube = FakeClock(), FakeKube()
    actions = RecordingActions()
    ex, _, _ = executor(kube, clock, actions, status_ok=False)
    with pytest.raises(RuntimeError):
        await ex.after_capture("shop-1", EVICT)
    assert actions.calls == []


async def test_lag_is_observed_from_a_blocked_loop() -> None:
    seen: list[float] = []
    task = asyncio.create_task(measure_lag(0.01, seen.append))
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop on purpose, as a runaway parse would
    await asyncio.sleep(0.05)
    task.cancel()
    assert max(seen) >= 0.15


def test_update_rules_keeps_unchanged_rules_and_cooldowns() -> None:
    a = RuleSpec(name="a", kind=RuleKind.GOROUTINE_GROWTH, window_seconds=60, min_growth=10)
    b = RuleSpec(name="b", kind=RuleKind.GOROUTINE_GROWTH, window_seconds=60, min_growth=10)
    gone = RuleSpec(name="gone", kind=RuleKind.GOROUTINE_GROWTH, window_seconds=60, min_growth=10)
    judge = TargetJudge([a, b, gone])
    for i in range(5):
        judge.observe(Sample(target="p", time=T0 + 10 * i, goroutines=100 + 50 * i))
    judge.restore_cooldowns({"a": T0 + 999, "b": T0 + 999, "gone": T0 + 999})
    before = judge.rule_states()
    assert before["a"].growth and before["b"].growth

    b2 = RuleSpec(name="b", kind=RuleKind.GOROUTINE_GROWTH, window_seconds=60, min_growth=20)
    new = RuleSpec(name="new", kind=RuleKind.HEAP_GROWTH)
    judge.update_rules([b2, a, new])

    after = judge.rule_states()
    assert list(after) == ["b", "a", "new"]
    assert after["a"].growth == before["a"].growth, "unchanged rule: same series"
    assert after["b"].growth is None, "changed rule: a new series"
    assert judge.cooldowns() == {"a": T0 + 999, "b": T0 + 999}, "a removed rule's cooldown goes"


def test_pod_facts_carry_restart_count_and_uid() -> None:
    body = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "containerStatuses": [{"restartCount": 2}, {"restartCount": 1}, {"restartCount": "x"}],
        },
    }
    info = pod_info(body)
    assert (info.uid, info.restart_count) == ("u-1", 3)
    assert pod_info({"metadata": {"name": "q"}}).restart_count == 0


def test_repeated_outcomes_do_not_push_the_last_real_action_out() -> None:
    log = ActionLog()
    log.record(T0, "p1", "Deployment/d", "Scale", False, "Pending", "about to act")
    log.record(T0, "p1", "Deployment/d", "Scale", False, "Done", "scaled to 2")
    for i in range(20):
        log.record(T0 + i, f"p{i}", "Deployment/d", "Scale", False, "Pending", "about to act")
        log.record(T0 + i, f"p{i}", "Deployment/d", "Scale", False, "AtMaxReplicas", "at 2")
    assert [e["result"] for e in log.entries] == ["AtMaxReplicas", "Done"]
