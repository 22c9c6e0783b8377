"""Builds a WatchController on fakes (fakes.py) with a real Watcher, rules and filesystem store."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable
from typing import Any

from tests.unit.control.fakes import (
    FakeClock,
    FakeKube,
    RecordingActions,
    Stop,
    SyntheticScraper,
    no_close,
    pod,
    refuse_forward,
)

from memorywatch.api.spec import WatchSpec
from memorywatch.control.supervise import Backoff
from memorywatch.control.watch import WatchController
from memorywatch.store import CaptureStore, FilesystemStore
from memorywatch.targets import PodInfo

RULES = [
    {"name": "goroutines-a", "kind": "GoroutineGrowth", "window": "40s", "minGrowth": "100000"},
    {"name": "goroutines-b", "kind": "GoroutineGrowth", "window": "40s", "minGrowth": "100000"},
]


def body(generation: int = 1, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "shop"}},
        "endpoint": {"port": 6060},
        "interval": "1s",
        "rules": RULES,
    }
    s.update(spec)
    return {"metadata": {"name": "mw", "namespace": "ns", "generation": generation}, "spec": s}


def controller(
    tmp_path: pathlib.Path,
    kube: FakeKube,
    clock: FakeClock,
    scraper: SyntheticScraper,
    actions: RecordingActions | None = None,
    **kwargs: Any,
) -> WatchController:
    async def make_store(spec: WatchSpec, namespace: str) -> CaptureStore:
        return FilesystemStore(tmp_path / "captures")

    return WatchController(
        kube=kube,
        scraper=scraper,  # type: ignore[arg-type]  # the synthetic scraper has the methods the engine calls
        make_store=make_store,
        actions=actions or RecordingActions(),
        namespace="ns",
        name="mw",
        uid="mw-uid",
        forward=refuse_forward,
        close_forward=no_close,
        clock=clock,
        backoff=Backoff(initial_seconds=0.01, max_seconds=0.05),
        reconcile_seconds=0.05,
        **kwargs,
    )


async def until(cond: Callable[[], Any], what: str, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Running:
    """The controller's run() in the background, with the body and pods a test changes as it goes."""

    def __init__(self, c: WatchController, b: dict[str, Any], pods: list[PodInfo] | None = None) -> None:
        self.c = c
        self.body = b
        self.pods = pods if pods is not None else [pod("shop-1")]
        self.stop = Stop()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.c.run(lambda: self.body, lambda: self.pods, self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)
