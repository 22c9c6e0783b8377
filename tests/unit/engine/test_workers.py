"""The bounded parse workers: real worker processes, each job under a deadline and an address-space limit.

The jobs are stdlib and memorywatch functions on purpose (a worker unpickles a job by its module name):
`time.sleep` overruns a deadline, `bytearray` asks for more memory than the limit, `os._exit` dies.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time

import pytest

from memorywatch.pprof import jobs
from memorywatch.pprof.errors import MalformedMetrics
from memorywatch.workers import (
    MiB,
    PoolLimits,
    WorkerBusy,
    WorkerCrashed,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerTimeout,
    operator_memory_limit_bytes,
)

pytestmark = pytest.mark.timeout(180)


async def test_a_job_returns_its_result_and_the_worker_is_reused() -> None:
    async with WorkerPool(PoolLimits(workers=1)) as pool:
        first = await pool.run(jobs.metrics, b"go_goroutines 7\nprocess_resident_memory_bytes 1024\n")
        second = await pool.run(int, "42")
        assert (first.goroutines, first.rss_bytes, second) == (7, 1024, 42)
        assert pool.started == 1 and pool.replaced == 0


async def test_the_jobs_own_error_comes_back_as_is() -> None:
    async with WorkerPool(PoolLimits(workers=1)) as pool:
        with pytest.raises(MalformedMetrics):
            await pool.run(jobs.metrics, b"this is { not prometheus\n")
        assert await pool.run(int, "5") == 5
        assert pool.replaced == 0  # an ordinary error does not cost the worker


async def test_a_job_past_its_deadline_is_killed_and_the_worker_replaced() -> None:
    async with WorkerPool(PoolLimits(workers=1, deadline_seconds=1.0)) as pool:
        await pool.run(int, "1")  # the worker is up; the deadline covers the job only
        started = time.monotonic()
        with pytest.raises(WorkerTimeout) as caught:
            await pool.run(time.sleep, 30)
        assert time.monotonic() - started < 10
        assert caught.value.limit_name == "deadline_seconds" and "deadline" in str(caught.value)
        assert await pool.run(int, "2") == 2
        assert pool.replaced == 1 and pool.started == 2


async def test_a_job_over_the_memory_limit_fails_alone_and_the_worker_is_replaced() -> None:
    async with WorkerPool(PoolLimits(workers=1, memory_bytes=64 * MiB)) as pool:
        with pytest.raises(WorkerOutOfMemory) as caught:
            await pool.run(bytearray, 512 * MiB)
        assert caught.value.limit_name == "memory_bytes" and "64 MiB" in str(caught.value)
        assert await pool.run(len, bytearray(8 * MiB)) == 8 * MiB  # within budget, in a fresh worker
        assert pool.replaced == 1


async def test_a_worker_that_dies_is_replaced() -> None:
    async with WorkerPool(PoolLimits(workers=1)) as pool:
        with pytest.raises(WorkerCrashed):
            await pool.run(os._exit, 3)
        assert await pool.run(int, "3") == 3
        assert pool.replaced == 1


async def test_a_cancelled_job_does_not_leave_a_busy_worker_behind() -> None:
    async with WorkerPool(PoolLimits(workers=1)) as pool:
        task = asyncio.create_task(pool.run(time.sleep, 30))
        await asyncio.sleep(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(pool.run(int, "4"), 60) == 4


async def test_jobs_beyond_the_pending_bound_are_refused() -> None:
    async with WorkerPool(PoolLimits(workers=1, max_pending=1)) as pool:
        running = asyncio.create_task(pool.run(time.sleep, 3))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(pool.run(int, "1"))
        await asyncio.sleep(0.1)
        with pytest.raises(WorkerBusy) as caught:
            await pool.run(int, "2")
        assert caught.value.limit_name == "max_pending"
        await running
        assert await waiting == 1


def test_the_operators_memory_limit_comes_from_the_env_then_the_cgroup(tmp_path: pathlib.Path) -> None:
    assert operator_memory_limit_bytes({"MEMORYWATCH_MEMORY_LIMIT": "1073741824"}, tmp_path) == 1 << 30
    assert operator_memory_limit_bytes({}, tmp_path) is None
    (tmp_path / "memory.max").write_text("max\n")
    assert operator_memory_limit_bytes({}, tmp_path) is None
    (tmp_path / "memory.max").write_text("536870912\n")
    assert operator_memory_limit_bytes({"MEMORYWATCH_MEMORY_LIMIT": "junk"}, tmp_path) == 512 * MiB


def test_pool_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="workers"):
        PoolLimits(workers=0)
