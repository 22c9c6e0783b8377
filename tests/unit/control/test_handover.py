"""Capture cooldowns survive a handover (control/handover.py): a replica that starts following a pod learns the
captures any replica took of it from the watch's MemoryCaptures, once per batch of new pods, and does not follow
(so cannot capture) pods whose captures it could not read, until the read succeeds or the watch's longest
cooldown has passed."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from tests.unit.control.fakes import T0, FakeClock, FakeKube, Stop, SyntheticScraper, pod
from tests.unit.control.harness import body, controller, until

from memorywatch.api.spec import parse_spec
from memorywatch.control.handover import (
    Handover,
    cooldowns_for,
    latest_captures,
    rule_cooldowns,
    share_cooldowns,
)
from memorywatch.control.sharding import ShardView
from memorywatch.control.status import iso
from memorywatch.k8s import ApiUnavailable, NotFoundError

PODS = [pod(f"shop-{i}") for i in range(4)]
SPEC = parse_spec(
    body(
        rules=[
            {
                "name": "fast",
                "kind": "GoroutineGrowth",
                "window": "40s",
                "minGrowth": "100000",
                "cooldown": "60s",
            },
            {"name": "default", "kind": "GoroutineGrowth", "window": "40s", "minGrowth": "100000"},
        ],
        capture={"cooldown": "10m"},
    )["spec"]
)


def capture(pod: str, rule: str, when: float, uid: str = "mw-uid") -> dict[str, Any]:
    return {
        "metadata": {"name": f"{pod}-{rule}-{int(when)}", "labels": {"memorywatch.io/memorywatch-uid": uid}},
        "spec": {"pod": pod, "rule": rule, "time": iso(when)},
    }


class ListFailingKube(FakeKube):
    """A FakeKube whose MemoryCapture list answers 503 while `list_fails` is set (an API server that cannot be
    made to fail a list on demand)."""

    def __init__(self) -> None:
        super().__init__()
        self.list_fails = False
        self.crd_missing = False
        self.lists = 0

    async def list_captures(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.lists += 1
        if self.list_fails:
            raise ApiUnavailable("list MemoryCaptures: 503 Service Unavailable", 503)
        if self.crd_missing:
            raise NotFoundError("list MemoryCaptures: 404 Not Found", 404)
        return await super().list_captures(namespace, label_selector)


def test_newest_capture_per_pod_and_rule_and_hostile_entries_ignored() -> None:
    objects: list[Any] = [
        capture("a", "fast", T0 - 100),
        capture("a", "fast", T0 - 10),
        capture("a", "default", T0 - 50),
        {"spec": {"pod": "b", "rule": "fast", "time": "yesterday"}},
        {"spec": {"pod": 3, "rule": "fast", "time": iso(T0)}},
        {"spec": "nonsense"},
        "not an object",
        {},
    ]
    assert latest_captures(objects) == {("a", "fast"): T0 - 10, ("a", "default"): T0 - 50}


def test_cooldowns_use_each_rules_cooldown_and_drop_ended_ones() -> None:
    seconds = rule_cooldowns(SPEC)
    assert seconds == {"fast": 60.0, "default": 600.0}
    captures = {("a", "fast"): T0 - 10, ("a", "default"): T0 - 700, ("b", "default"): T0 - 30,
                ("c", "fast"): T0 - 5, ("a", "removed-rule"): T0}  # fmt: skip
    assert cooldowns_for(["a", "b"], captures, seconds, T0) == {
        "a": {"fast": T0 + 50},
        "b": {"default": T0 + 570},
    }


async def test_a_failed_read_holds_the_pods_until_it_succeeds_or_the_longest_cooldown_passed() -> None:
    clock = FakeClock()
    kube = ListFailingKube()
    kube.captures[("ns", "x")] = capture("a", "fast", T0 - 10)
    h = Handover(kube, "ns", "mw-uid", clock)
    kube.list_fails = True
    assert await h.learn(SPEC, ["a", "b"]) == {}
    clock.advance(300)
    assert await h.learn(SPEC, ["a", "b", "c"]) == {}, "still within the 600 s bound"
    kube.list_fails = False
    assert await h.learn(SPEC, ["a"]) == {"a": {}}, "the capture's 60 s cooldown ended meanwhile"
    kube.list_fails = True
    clock.advance(300)
    assert await h.learn(SPEC, ["b", "c"]) == {"b": {}}, "b waited 600 s; c only 300 s"
    clock.advance(300)
    assert await h.learn(SPEC, ["c"]) == {"c": {}}
    assert await h.learn(SPEC, []) == {}
    assert kube.lists == 5, "one list per batch, none for an empty one"


async def test_a_replica_taking_over_does_not_capture_what_another_captured(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    kube = ListFailingKube()
    kube.captures[("ns", "x")] = capture("shop-1", "goroutines-a", T0 - 10)
    kube.captures[("ns", "y")] = capture("shop-2", "goroutines-a", T0 - 10, uid="another-watch")
    view = ShardView("a", frozenset({"a"}))
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock), shard=lambda: view)
    stop = Stop()
    kube.list_fails = True
    task = asyncio.create_task(c.run(lambda: body(1), lambda: PODS, stop))
    try:
        await until(lambda: kube.lists >= 3, "reads retried at each reconcile")
        assert c.watcher is not None and not c.watcher.target_keys(), "no pod followed before the read"
        kube.list_fails = False
        await until(lambda: c.watcher is not None and len(c.watcher.target_keys()) == 4, "every pod followed")
        assert c.watcher.cooldowns("shop-1") == {"goroutines-a": T0 - 10 + 1800.0}
        assert c.watcher.cooldowns("shop-2") == {}, "another watch's capture is not this watch's"
        lists = kube.lists
        await asyncio.sleep(0.3)  # several reconciles with nothing new: no more reads
        assert kube.lists == lists
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_without_sharding_pods_do_not_wait_for_the_captures(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    kube = ListFailingKube()
    kube.list_fails = True
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock))
    stop = Stop()
    task = asyncio.create_task(c.run(lambda: body(1), lambda: PODS, stop))
    try:
        # The MemoryCaptures cannot be listed (the periodic sweep tries), yet every pod is followed at once.
        await until(lambda: c.watcher is not None and len(c.watcher.target_keys()) == 4, "every pod followed")
        assert c.handover is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_pods_moving_from_a_live_replica_are_held_back_for_the_grace() -> None:
    clock = FakeClock()
    kube = ListFailingKube()
    h = Handover(
        kube, "ns", "mw-uid", clock, grace_seconds=10 + 1 / 3
    )  # not exact in binary: no rounding slip
    assert await h.learn(SPEC, ["a", "b"], from_live=["a"]) == {"b": {}}
    clock.advance(10)
    assert await h.learn(SPEC, ["a"]) == {}, "still held, though no longer named as moving"
    assert kube.lists == 1, "nothing to read while every new pod is held"
    clock.advance(0.34)
    assert await h.learn(SPEC, ["a"]) == {"a": {}}


def test_cooldowns_written_ahead_into_other_shares() -> None:
    status: dict[str, Any] = {
        "shards": {
            "x": {"cooldowns": [
                {"pod": "a", "rule": "r", "type": "Capture", "until": iso(T0 + 30)},
                {"pod": "a", "rule": "s", "type": "Capture", "until": iso(T0 - 1)},
                {"pod": "a", "rule": "t", "type": "Action", "until": iso(T0 + 30)},
                {"pod": "b", "rule": "r", "until": iso(T0 + 60)},
                {"pod": "a", "rule": 5, "until": iso(T0 + 60)}, "junk",
            ]},
            "y": {"cooldowns": [{"pod": "a", "rule": "r", "type": "Capture", "until": iso(T0 + 90)}]},
            "z": "junk",
        }
    }  # fmt: skip
    assert share_cooldowns(status, ["a"], T0) == {"a": {"r": T0 + 90}}
    assert share_cooldowns({"shards": []}, ["a"], T0) == {}


async def test_a_joining_replica_waits_for_the_live_owner_then_takes_its_cooldowns(
    tmp_path: pathlib.Path,
) -> None:
    """Replica a starts while b runs: a's pods were b's, so a holds them back for the grace, then follows them
    with the cooldowns b wrote ahead into its share (a capture b took whose MemoryCapture is not there yet)."""
    clock = FakeClock()
    kube = ListFailingKube()
    view = ShardView("a", frozenset({"a", "b"}))
    mine = {p.name for p in PODS if view.owns("ns", p.name)}
    assert mine
    taken = sorted(mine)[0]
    watch = body(1)
    watch["status"] = {"shards": {"b": {"cooldowns": [{"pod": taken, "rule": "goroutines-b", "type": "Capture",
                                                       "until": iso(T0 + 600)}]}}}  # fmt: skip
    c = controller(
        tmp_path, kube, clock, SyntheticScraper(clock), shard=lambda: view, handover_grace_seconds=10
    )
    stop = Stop()
    task = asyncio.create_task(c.run(lambda: watch, lambda: [p for p in PODS if p.name in mine], stop))
    try:
        await asyncio.sleep(0.3)  # several reconciles
        assert c.watcher is not None and not c.watcher.target_keys(), "held back during the grace"
        clock.advance(10)
        await until(
            lambda: c.watcher is not None and set(c.watcher.target_keys()) == mine, "a's pods followed"
        )
        assert c.watcher.cooldowns(taken) == {"goroutines-b": T0 + 600}
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_without_the_memorycapture_crd_there_is_nothing_to_wait_for() -> None:
    kube = ListFailingKube()
    kube.crd_missing = True
    h = Handover(kube, "ns", "mw-uid", FakeClock())
    assert await h.learn(SPEC, ["a", "b"]) == {"a": {}, "b": {}}
