"""The pure status model: conditions from facts, lastTransitionTime kept while a status holds, Degraded."""

from __future__ import annotations

from tests.unit.control.fakes import T0

from memorywatch.control.status import (
    Condition,
    ScrapeError,
    WatchFacts,
    comparable,
    derive_conditions,
    iso,
    render_status,
)

RESOLVED = ("True", "TargetsFound", "watching 1 pod(s)")


def test_a_healthy_watch_is_ready_and_not_degraded() -> None:
    c = derive_conditions({}, WatchFacts(3, targets=1, resolution=RESOLVED, store_location="file:///s"), T0)
    assert {k: (v.status, v.reason) for k, v in c.items()} == {
        "Ready": ("True", "Watching"),
        "TargetsResolved": ("True", "TargetsFound"),
        "ScrapesHealthy": ("True", "ScrapesSucceeding"),
        "StoreAvailable": ("True", "StoreWritable"),
        "LeakDetected": ("False", "NoLeak"),
        "Degraded": ("False", "AllTasksRunning"),
    }
    assert all(v.observed_generation == 3 and v.last_transition_time == iso(T0) for v in c.values())


def test_last_transition_time_moves_only_when_the_status_does() -> None:
    first = derive_conditions({}, WatchFacts(1, targets=1, resolution=RESOLVED), T0)
    failing = WatchFacts(
        2, targets=1, resolution=RESOLVED, scrape_errors=(ScrapeError("p", "Timeout", "slow"),)
    )
    second = derive_conditions(first, failing, T0 + 60)
    assert second["ScrapesHealthy"].status == "False"
    assert second["ScrapesHealthy"].last_transition_time == iso(T0 + 60)
    assert second["Ready"].last_transition_time == iso(T0), "Ready stayed True: its time is kept"
    assert second["Ready"].observed_generation == 2
    third = derive_conditions(second, dataclass_replace(failing, generation=3), T0 + 120)
    assert third["ScrapesHealthy"].last_transition_time == iso(T0 + 60)


def dataclass_replace(f: WatchFacts, **kw: object) -> WatchFacts:
    import dataclasses

    return dataclasses.replace(f, **kw)  # type: ignore[arg-type]


def test_degraded_names_the_newest_fault_and_counts_the_rest() -> None:
    facts = WatchFacts(1, targets=1, resolution=RESOLVED, faults=("pod a, capture: MemoryError: x", "b", "c"))
    d = derive_conditions({}, facts, T0)["Degraded"]
    assert (d.status, d.reason) == ("True", "TaskFailed")
    assert d.message == "pod a, capture: MemoryError: x (and 2 more)"
    assert derive_conditions({}, facts, T0)["Ready"].status == "True", "degraded is not down"


def test_ready_follows_the_first_blocker() -> None:
    facts = WatchFacts(1, resolution=("False", "NoPodsSelected", "no pod"), store_error="bucket gone")
    c = derive_conditions({}, facts, T0)
    assert (c["Ready"].status, c["Ready"].reason, c["Ready"].message) == ("False", "NoPodsSelected", "no pod")
    assert c["ScrapesHealthy"].status == "Unknown"


def test_invalid_spec_and_suspend_say_so() -> None:
    c = derive_conditions({}, WatchFacts(1, spec_errors=("spec.interval must be at least 1s",)), T0)
    assert (c["Ready"].reason, c["Ready"].message) == ("InvalidSpec", "spec.interval must be at least 1s")
    c = derive_conditions({}, WatchFacts(1, suspended=True), T0)
    assert c["Ready"].reason == "Suspended"


def test_a_leak_stays_reported_and_restored_conditions_keep_their_time() -> None:
    old = Condition("LeakDetected", "True", "LeakDetected", "pod a: grew", 1, "2020-01-01T00:00:00Z")
    c = derive_conditions({"LeakDetected": old}, WatchFacts(2, targets=1, resolution=RESOLVED), T0)
    assert c["LeakDetected"] == old
    again = Condition.from_dict(c["LeakDetected"].as_dict())
    assert again == old


def test_comparable_ignores_transition_times_only() -> None:
    facts = WatchFacts(1, targets=1, resolution=RESOLVED)
    a = render_status(
        derive_conditions({}, facts, T0), facts, breaching=0, captures=[], actions=[], cooldowns={}
    )
    b = render_status(
        derive_conditions({}, facts, T0 + 5), facts, breaching=0, captures=[], actions=[], cooldowns={}
    )
    assert a != b and comparable(a) == comparable(b)
    c = render_status(
        derive_conditions({}, facts, T0), facts, breaching=1, captures=[], actions=[], cooldowns={}
    )
    assert comparable(a) != comparable(c)


def test_status_lists_cooldowns_bounded_and_sorted() -> None:
    facts = WatchFacts(1)
    cooldowns = {(f"p{i:03}", "r", "Capture"): T0 + i for i in range(150)}
    s = render_status({}, facts, breaching=0, captures=[], actions=[], cooldowns=cooldowns)
    assert len(s["cooldowns"]) == 100
    assert s["cooldowns"][0] == {"pod": "p000", "rule": "r", "type": "Capture", "until": iso(T0)}


def test_targets_resolved_says_what_is_missing() -> None:
    from memorywatch.control.status import targets_resolved

    assert targets_resolved("ns", "app=x", 0, 0, [])[1:] == (
        "NoPodsSelected",
        "no pod in namespace ns matches the selector app=x",
    )
    assert targets_resolved("ns", "app=x", 2, 0, [])[1] == "NoRunningPods"
    assert targets_resolved("ns", "app=x", 2, 2, ["a", "b"]) == ("False", "TargetsUnresolved", "a; b")
    assert targets_resolved("ns", "app=x", 2, 2, []) == ("True", "TargetsFound", "watching 2 pod(s)")


def test_cooldowns_merge_from_the_engine_and_expire() -> None:
    from memorywatch.control.status import breaching_pods, merge_cooldowns

    cooldowns = {
        ("a", "r", "Capture"): T0 + 10,
        ("old", "r", "Capture"): T0 - 1,
        ("D/x", "EvictPod", "Action"): T0 + 5,
    }
    merge_cooldowns(cooldowns, {"a": {"r": T0 + 5, "s": T0 + 20}, "b": {"r": T0 - 5}}, T0)
    assert cooldowns == {
        ("a", "r", "Capture"): T0 + 10,
        ("a", "s", "Capture"): T0 + 20,
        ("D/x", "EvictPod", "Action"): T0 + 5,
    }
    assert breaching_pods(cooldowns, ["a", "b"], T0) == 1
    assert breaching_pods(cooldowns, ["b"], T0) == 0
