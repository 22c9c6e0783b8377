"""A MemoryWatch's status with several replicas (control/shards.py, control/shard_status.py): each replica
writes only its share, one replica (chosen by rendezvous hashing over the watch's key) writes the summary from
the live members' shares and drops the others'; shares read back are hostile input."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Mapping
from typing import Any

from tests.unit.control.fakes import T0, FakeClock, FakeKube, Stop, SyntheticScraper, pod
from tests.unit.control.harness import body, controller, until

from memorywatch.control.shard_status import ShardStatus
from memorywatch.control.sharding import ShardView, owner
from memorywatch.control.shards import render_share, summarize, watch_key
from memorywatch.control.status import ScrapeError, WatchFacts, iso
from memorywatch.handlers import owned_pods

PODS = [pod(f"shop-{i}") for i in range(12)]


def merge(into: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 merge patch, as the API server applies it."""
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = _copy(v)


def _copy(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _copy(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


class MergingKube(FakeKube):
    """A FakeKube that keeps one MemoryWatch and merge-patches its status, as the API server does, so that the
    writes of several controllers land in one object."""

    def __init__(self) -> None:
        super().__init__()
        self.watch: dict[str, Any] = body(1)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await super().patch_status(namespace, name, status)
        merge(self.watch.setdefault("status", {}), status)


def share(targets: int, **kw: Any) -> dict[str, Any]:
    facts = WatchFacts(1, targets=targets, selected=targets, running=targets, **kw)
    return render_share(facts, breaching=0, captures=[], actions=[], cooldowns={})


def test_the_summary_counts_each_members_share_once_and_drops_the_dead() -> None:
    shares = {
        "a": share(3, scrape_errors=(ScrapeError("shop-1", "ScrapeTimeout", "timed out"),)),
        "b": share(4),
        "gone": share(5),
    }
    shares["a"]["captures"] = [{"time": iso(T0 - 60), "pod": "shop-1", "rule": "r"}]
    shares["b"]["captures"] = [{"time": iso(T0 - 5), "pod": "shop-2", "rule": "r"}]
    shares["b"]["cooldowns"] = [{"pod": "shop-2", "rule": "r", "type": "Capture", "until": iso(T0 + 60)},
                                {"pod": "shop-9", "rule": "r", "type": "Capture", "until": iso(T0 - 1)}]  # fmt: skip
    s = summarize(shares, {"a", "b"}, {}, WatchFacts(1), namespace="ns", selector="app=shop", now=T0)
    assert s.dropped == ("gone",)
    assert s.status["targets"] == 7
    assert [c["pod"] for c in s.status["captures"]] == ["shop-2", "shop-1"], "newest first, from all shares"
    assert s.status["cooldowns"] == [{"pod": "shop-2", "rule": "r", "type": "Capture", "until": iso(T0 + 60)}]
    assert s.conditions["ScrapesHealthy"].message == "1/7 failing; shop-1: timed out"
    assert s.conditions["TargetsResolved"].status == "True"
    assert s.conditions["Ready"].message == "watching 7 pod(s)"


def test_a_member_with_no_pod_does_not_make_the_watch_unresolved() -> None:
    shares = {"a": share(0, resolution=("False", "NoPodsSelected", "none")), "b": share(2)}
    s = summarize(shares, {"a", "b"}, {}, WatchFacts(1), namespace="ns", selector="app=shop", now=T0)
    assert s.conditions["TargetsResolved"].status == "True"
    problem = share(1, resolution=("False", "SecretAccessNotGranted", "pod x: grant it"))
    s = summarize({"a": problem, "b": share(2)}, {"a", "b"}, {}, WatchFacts(1), namespace="ns",
                  selector="app=shop", now=T0)  # fmt: skip
    assert (s.conditions["TargetsResolved"].reason, s.conditions["TargetsResolved"].message) == (
        "SecretAccessNotGranted",
        "pod x: grant it",
    )


def test_hostile_shares_count_as_absent() -> None:
    shares: dict[str, Any] = {
        "a": {"targets": "many", "failing": -3, "captures": "x", "cooldowns": [{"until": 5}, 7],
              "resolution": [], "firstScrapeError": "boom", "faults": [1, "f" * 5000]},
        "b": "not a share",
        "c": share(2),
    }  # fmt: skip
    s = summarize(shares, {"a", "b", "c"}, {}, WatchFacts(1), namespace="ns", selector="x", now=T0)
    assert s.status["targets"] == 2
    assert s.status["captures"] == [] and s.status["cooldowns"] == []
    assert len(s.conditions["Degraded"].message) <= 1000


async def test_two_replicas_write_one_consistent_status(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    kube = MergingKube()
    views = {m: ShardView(m, frozenset({"a", "b"})) for m in ("a", "b")}

    class Memo:
        def __init__(self, m: str) -> None:
            self.m = m

        @property
        def shard(self) -> Any:
            return type("M", (), {"view": views[self.m]})

    memos = {m: Memo(m) for m in views}
    controllers = {
        m: controller(tmp_path / m, kube, clock, SyntheticScraper(clock), shard=lambda m=m: views[m])
        for m in views
    }
    writer = owner({"a", "b"}, watch_key("ns", "mw"))
    stop = Stop()
    tasks = [
        asyncio.create_task(
            c.run(lambda: kube.watch, lambda m=m: owned_pods(memos[m], "ns", {"ns": PODS}), stop)
        )
        for m, c in controllers.items()
    ]

    def status() -> dict[str, Any]:
        return dict(kube.watch.get("status") or {})

    try:
        await until(lambda: status().get("targets") == 12, "the summary to count all 12 pods")
        shards = status()["shards"]
        assert set(shards) == {"a", "b"}
        assert shards["a"]["targets"] + shards["b"]["targets"] == 12 and shards["a"]["targets"] > 0
        summaries = [s for s in kube.statuses if "targets" in s]
        # Before the other's share is in, the summary counts only what it has: never a pod twice.
        assert summaries[-1]["targets"] == 12 and all(s["targets"] <= 12 for s in summaries)
        # Only the writer wrote summary fields; the other wrote only its share.
        other = ({"a", "b"} - {writer}).pop()
        assert all(set(s) == {"shards"} for s in kube.statuses if set(s.get("shards") or {}) == {other})
        # b's Lease expires: a's view has only a; a takes every pod, writes the summary, and drops b's share.
        views["a"] = ShardView("a", frozenset({"a"}))
        tasks[1].cancel()
        await until(lambda: set(status().get("shards") or {}) == {"a"} and status().get("targets") == 12,
                    "a to summarize alone")  # fmt: skip
        assert status()["shards"]["a"]["targets"] == 12
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def test_without_sharding_status_has_no_shards(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    kube = MergingKube()
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock))
    stop = Stop()
    task = asyncio.create_task(c.run(lambda: kube.watch, lambda: PODS, stop))
    try:
        await until(lambda: (kube.watch.get("status") or {}).get("targets") == 12, "status")
        assert all("shards" not in s for s in kube.statuses)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_cleared_scrape_error_leaves_the_share() -> None:
    """A merge patch keeps what it does not name: the share names its absent fields as null."""
    kube = MergingKube()
    view = ShardView("a", frozenset({"a"}))
    writer = ShardStatus(kube, "ns", "mw", lambda: view, FakeClock())
    writer.get_body = lambda: kube.watch
    failing = WatchFacts(1, targets=1, scrape_errors=(ScrapeError("shop-1", "ScrapeTimeout", "timed out"),))
    assert await writer.write(share(1, scrape_errors=failing.scrape_errors), failing, "app=shop", False)
    assert kube.watch["status"]["shards"]["a"]["firstScrapeError"]["pod"] == "shop-1"
    assert kube.watch["status"]["conditions"]
    healthy = WatchFacts(1, targets=1)
    assert await writer.write(share(1), healthy, "app=shop", False)
    assert "firstScrapeError" not in kube.watch["status"]["shards"]["a"]
    scrapes = {c["type"]: c for c in kube.watch["status"]["conditions"]}["ScrapesHealthy"]
    assert scrapes["status"] == "True"
