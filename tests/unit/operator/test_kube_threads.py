"""API calls run in a thread pool of their own, so file I/O on asyncio's default executor cannot starve them
(and a stalled API server cannot starve the file I/O). No API server is needed: `call` runs any callable."""

from __future__ import annotations

import asyncio
import threading

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from memorywatch.k8s.client import API_THREADS, Kube, NotFoundError


def test_api_calls_complete_while_the_default_executor_is_full() -> None:
    async def main() -> str:
        kube = Kube(k8s.ApiClient(), instance="test")
        loop = asyncio.get_running_loop()
        release = threading.Event()
        # occupy every thread of asyncio's default executor, as slow store I/O would
        blockers = [asyncio.to_thread(release.wait, 30) for _ in range(64)]
        tasks = [asyncio.ensure_future(b) for b in blockers]
        await asyncio.sleep(0.1)
        try:
            async with asyncio.timeout(5):
                return await kube.call("get thing", lambda: threading.current_thread().name)
        finally:
            release.set()
            await asyncio.gather(*tasks)
            assert loop.is_running()

    assert asyncio.run(main()).startswith("memorywatch-kube")


def test_failures_are_translated_and_the_pool_is_sized() -> None:
    async def main() -> None:
        kube = Kube(k8s.ApiClient(), instance="test")

        def missing() -> None:
            raise ApiException(status=404, reason="Not Found")

        with pytest.raises(NotFoundError):
            await kube.call("get Pod shop/x", missing)

    asyncio.run(main())
    assert API_THREADS >= 8


class FakePagedCaptures:
    """Stands in for CustomObjectsApi's list call only (a fake collaborator): serves `total` objects in pages
    the way the API server does, with a continue token until the last page, and records each request."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.requests: list[dict[str, object]] = []

    def list_namespaced_custom_object(self, *args: object, **kwargs: object) -> dict[str, object]:
        self.requests.append(kwargs)
        start = int(str(kwargs.get("_continue") or 0))
        limit = int(str(kwargs["limit"]))
        end = min(self.total, start + limit)
        items = [{"metadata": {"name": f"c{i}"}} for i in range(start, end)]
        return {"items": items, "metadata": {"continue": str(end) if end < self.total else ""}}


def test_memorycaptures_are_read_page_by_page_up_to_a_bound() -> None:
    def read(total: int, **bounds: int) -> tuple[list[str], FakePagedCaptures]:
        kube = Kube(k8s.ApiClient(), instance="test")
        pages = FakePagedCaptures(total)
        kube.custom = pages  # type: ignore[assignment]
        found = asyncio.run(kube.list_captures("shop", "memorywatch.io/memorywatch-uid=u", **bounds))
        return [o["metadata"]["name"] for o in found], pages

    names, pages = read(7, page_size=3)
    assert names == [f"c{i}" for i in range(7)], "every page, in order"
    assert [r.get("_continue") for r in pages.requests] == [None, "3", "6"]
    assert all(r["label_selector"] == "memorywatch.io/memorywatch-uid=u" for r in pages.requests)
    names, pages = read(10, page_size=3, max_pages=2)
    assert len(names) == 6 and len(pages.requests) == 2, "bounded: no more than max_pages requests"
    names, _ = read(0)
    assert names == []
