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
