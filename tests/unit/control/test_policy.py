"""The action policy: a pure decision from the facts."""

from __future__ import annotations

from tests.unit.control.fakes import T0

from memorywatch.api.spec import ActionSpec
from memorywatch.control.policy import ActionRequest, decide_action, keeps_cooldown

EVICT = ActionSpec(type="EvictPod", cooldown_seconds=600)


def test_no_action_configured_records_nothing() -> None:
    d = decide_action(ActionRequest("p", "Deployment/d", ActionSpec(), T0))
    assert (d.act, d.record, d.reason) == (False, False, "NoAction")


def test_acts_when_nothing_holds_it_back() -> None:
    d = decide_action(ActionRequest("p", "Deployment/d", EVICT, T0))
    assert (d.act, d.dry_run) == (True, False)
    d = decide_action(ActionRequest("p", "Deployment/d", ActionSpec(type="Scale", dry_run=True), T0))
    assert (d.act, d.dry_run) == (True, True)


def test_a_cooldown_holds_it_back_until_it_ends() -> None:
    d = decide_action(ActionRequest("p", "Deployment/d", EVICT, T0, cooldown_until=T0 + 60))
    assert (d.act, d.reason) == (False, "CoolingDown") and "Deployment/d" in d.message
    assert decide_action(ActionRequest("p", "Deployment/d", EVICT, T0 + 60, cooldown_until=T0 + 60)).act


def test_one_action_per_workload_at_a_time() -> None:
    d = decide_action(ActionRequest("p", "Deployment/d", EVICT, T0, in_progress=True))
    assert (d.act, d.reason) == (False, "InProgress")


def test_passing_obstacles_do_not_keep_the_cooldown() -> None:
    assert not keeps_cooldown("DisruptionBudget", dry_run=False)
    assert keeps_cooldown("AtMaxReplicas", dry_run=False)
    assert keeps_cooldown("DisruptionBudget", dry_run=True)
