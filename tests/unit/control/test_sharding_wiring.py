"""Ownership changes reach a running controller: handlers.owned_pods is read at every reconcile, so pods this
replica stops owning are dropped and pods it takes over are added, without restarting the engine; with no
`shard` in kopf's memo (sharding off) every pod is followed, as before."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib

from tests.unit.control.fakes import FakeClock, FakeKube, Stop, SyntheticScraper, pod
from tests.unit.control.harness import body, controller, until

from memorywatch.control.sharding import ShardView
from memorywatch.handlers import owned_pods
from memorywatch.targets import PodInfo

PODS = [pod(f"shop-{i}") for i in range(12)]


@dataclasses.dataclass
class FakeMembership:
    """Stands for control.membership.MemberLeases: only the view, which the test swaps."""

    view: ShardView


@dataclasses.dataclass
class Memo:
    shard: FakeMembership | None


def names(pods: list[PodInfo]) -> set[str]:
    return {p.name for p in pods}


def test_without_sharding_every_pod_is_followed() -> None:
    assert owned_pods(object(), "ns", {"ns": PODS}) == PODS  # a memo with no `shard` at all
    assert owned_pods(Memo(None), "ns", {"ns": PODS}) == PODS
    assert owned_pods(Memo(None), "other", {"ns": PODS}) == []


def test_members_partition_the_pods() -> None:
    members = frozenset({"a", "b", "c"})
    shares = [
        names(owned_pods(Memo(FakeMembership(ShardView(m, members))), "ns", {"ns": PODS})) for m in members
    ]
    assert set().union(*shares) == names(PODS)
    assert sum(len(s) for s in shares) == len(PODS), "no pod in two shares"


async def test_an_ownership_change_is_taken_at_the_next_reconcile(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    c = controller(tmp_path, FakeKube(), clock, SyntheticScraper(clock))
    membership = FakeMembership(ShardView("a", frozenset({"a", "b"})))
    memo = Memo(membership)
    mine = names(owned_pods(memo, "ns", {"ns": PODS}))
    assert mine and mine != names(PODS)

    def targets() -> set[str]:
        return set(c.watcher.target_keys()) if c.watcher is not None else set()

    stop = Stop()
    task = asyncio.create_task(c.run(lambda: body(1), lambda: owned_pods(memo, "ns", {"ns": PODS}), stop))
    try:
        await until(lambda: targets() == mine, "a's share")
        engine = c._watcher_task
        membership.view = ShardView("a", frozenset({"a"}))  # b's Lease expired: a takes everything
        await until(lambda: targets() == names(PODS), "b's pods taken over")
        membership.view = ShardView("a", frozenset({"a", "b"}))  # b is back: its pods are handed back
        await until(lambda: targets() == mine, "b's pods handed back")
        assert c._watcher_task is engine, "the engine keeps running; only its targets change"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
