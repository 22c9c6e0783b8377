"""Runs the operator's WatchController in the test process against the real API server (a controller-level
test: real Kube client, real Scraper, real port-forwards, a real filesystem store; only kopf is left out, its part
played by a loop that reads the MemoryWatch and its namespace's pods from the API server every second)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

from memorywatch.actions.runner import KubeActions
from memorywatch.api.spec import WatchSpec
from memorywatch.control.watch import WatchController
from memorywatch.k8s import Kube
from memorywatch.k8s.portforward import close_all, close_forward, forwarded_url
from memorywatch.samples import Sample
from memorywatch.scrape import Scraper, TargetConfig
from memorywatch.store import CaptureStore, FilesystemStore
from memorywatch.targets import PodInfo, pod_info

GROUP, VERSION, PLURAL = "memorywatch.io", "v1alpha1", "memorywatches"


class RecordingScraper:
    """The real Scraper, with every sample it returned kept for the test to look at."""

    def __init__(self, real: Scraper) -> None:
        self._real = real
        self.samples: list[tuple[TargetConfig, Sample]] = []

    async def sample(self, target: TargetConfig, **kwargs: Any) -> Sample:
        s = await self._real.sample(target, **kwargs)
        self.samples.append((target, s))
        return s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class Cached:
    """The latest MemoryWatch body and pods of one namespace, refreshed from the API server every second."""

    def __init__(self, api: Any, namespace: str, name: str) -> None:
        from kubernetes import client

        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace, self.name = namespace, name
        self.body: dict[str, Any] = {}
        self.pods: list[PodInfo] = []

    def refresh(self) -> None:
        self.body = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        items = self.core.list_namespaced_pod(self.namespace).items
        self.pods = [pod_info(self.api.sanitize_for_serialization(p)) for p in items]

    async def follow(self) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(1)


class Stop:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - kopf's signature
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()


@contextlib.asynccontextmanager
async def running_controller(
    api: Any, namespace: str, name: str, store_dir: pathlib.Path, *, kube: Kube | None = None
) -> AsyncIterator[tuple[WatchController, RecordingScraper, Cached]]:
    """Start a WatchController for MemoryWatch namespace/name (which must exist); stop it on exit."""
    kube = kube or Kube(api)
    cached = Cached(api, namespace, name)
    await asyncio.to_thread(cached.refresh)
    uid = cached.body["metadata"]["uid"]

    async def make_store(spec: WatchSpec, ns: str) -> CaptureStore:
        return FilesystemStore(store_dir)

    async with Scraper() as real:
        scraper = RecordingScraper(real)
        c = WatchController(
            kube=kube,
            scraper=scraper,  # type: ignore[arg-type]
            make_store=make_store,
            actions=KubeActions(kube),
            namespace=namespace,
            name=name,
            uid=uid,
            forward=lambda ns, pod, port, scheme: forwarded_url(kube, ns, pod, port, scheme=scheme),
            close_forward=close_forward,
            reconcile_seconds=1.0,
        )
        follower = asyncio.create_task(cached.follow())
        stop = Stop()
        task = asyncio.create_task(c.run(lambda: cached.body, lambda: cached.pods, stop))
        try:
            yield c, scraper, cached
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await close_all()


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


async def until(cond: Any, what: str, within: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        got = cond()
        if got:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
