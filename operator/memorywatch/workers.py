"""Bounded worker processes for the expensive parses of untrusted target data (profiles, diffs, big texts).

Why processes, and why hand-rolled: a parse in Python cannot be interrupted from the outside, and one
hostile profile can cost hundreds of MiB and seconds of CPU. On the event loop that stalls every other
target; in a thread it still holds the GIL and shares the operator's memory. A worker process with an
address-space limit (RLIMIT_AS) and a deadline contains both: a runaway input costs its own job and one
worker, which is replaced. `concurrent.futures.ProcessPoolExecutor` cannot do that: it has no per-job
deadline, cannot kill one worker (a dead worker breaks the whole pool: BrokenProcessPool) and has no hook
to set rlimits after the worker has imported what it needs. The pool here is a few dozen lines instead.

    pool = WorkerPool(PoolLimits(workers=2, memory_bytes=256 * MiB, deadline_seconds=20))
    async with pool:
        info = await pool.run(some_module_level_function, data, budget)

Errors (all `WorkerError`, each naming the limit it hit and how to raise it):

    WorkerError
    ├── WorkerTimeout       the job ran past `deadline_seconds`; the worker was killed and replaced
    ├── WorkerOutOfMemory   the job hit the address-space limit (`memory_bytes`); the worker is replaced
    ├── WorkerCrashed       the worker died (killed by a signal, the OOM killer); it is replaced
    └── WorkerBusy          more than `max_pending` jobs were already waiting for a worker

An exception raised by the job itself (e.g. a PprofError) is re-raised as is in the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import resource
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)

MiB = 1024 * 1024
P = ParamSpec("P")
T = TypeVar("T")

# What the worker imports before it measures itself and applies its limit, so imports never count.
_PRELOAD = ("memorywatch.pprof", "memorywatch.pprof.jobs")
_STARTUP_SECONDS = 60.0  # a fresh interpreter importing protobuf on a loaded node


@dataclasses.dataclass(frozen=True)
class PoolLimits:
    """How many workers, and what one job may cost.

    - `workers=2`: parses are rare next to samples (profiles on captures, big texts); two let one slow job
      not hold up the next, and cost ~40 MiB of RSS each when idle.
    - `memory_bytes=256 MiB`: the address space a job may add on top of the worker's own (imports).
      Sized from the operator's memory limit by `scrape.Limits.for_memory_limit`.
    - `deadline_seconds=20`: the wall-clock bound of one job, queueing not included.
    - `max_pending=64`: jobs waiting for a free worker; more are refused (WorkerBusy) instead of queueing
      without bound.
    """

    workers: int = 2
    memory_bytes: int = 256 * MiB
    deadline_seconds: float = 20.0
    max_pending: int = 64

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"PoolLimits.{field.name} must be positive")


class WorkerError(Exception):
    """A job in a worker process failed for a reason of the pool's own, not of the job's code.

    `limit_name` names the PoolLimits field that was hit, `limit` its value."""

    def __init__(self, message: str, limit_name: str, limit: float) -> None:
        super().__init__(message)
        self.limit_name = limit_name
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.limit_name, self.limit))


class WorkerTimeout(WorkerError):
    """The job ran past its deadline."""


class WorkerOutOfMemory(WorkerError):
    """The job needed more memory than the worker's address-space limit."""


class WorkerCrashed(WorkerError):
    """The worker process died during the job."""


class WorkerBusy(WorkerError):
    """Too many jobs were already waiting for a worker."""


def _address_space_bytes() -> int:
    """This process's mapped virtual memory (VmSize), what RLIMIT_AS bounds."""
    try:
        pages = int(pathlib.Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _worker_main(conn: multiprocessing.connection.Connection, memory_bytes: int) -> None:
    """The worker: import, cap the address space at what it has now plus `memory_bytes`, then serve jobs."""
    import importlib

    for module in _PRELOAD:
        importlib.import_module(module)
    base = _address_space_bytes()
    if base:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = base + memory_bytes
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    conn.send(("ready", base))
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone or closed us
        except MemoryError:
            conn.send(("oom", None))
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except MemoryError:
            reply = ("oom", None)
        except RecursionError as e:
            reply = ("error", RecursionError(str(e)[:200]))
        except Exception as e:  # noqa: BLE001 - the job's own error goes back to the caller
            reply = ("error", e)
        del fn, args
        try:
            conn.send(reply)
        except MemoryError:
            with contextlib.suppress(Exception):
                conn.send(("oom", None))
            return
        except Exception as e:  # noqa: BLE001 - an unpicklable result or error
            conn.send(("error", RuntimeError(f"{type(e).__name__}: {str(e)[:200]}")))
        if reply[0] == "oom":
            return  # a worker that ran out of memory may be fragmented: start afresh


@dataclasses.dataclass
class _Worker:
    process: BaseProcess
    conn: multiprocessing.connection.Connection
    ready: bool = False

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()

    def reap(self) -> None:
        """After kill(): wait for the process, then close our end (a reader thread has seen EOF by then)."""
        with contextlib.suppress(Exception):
            self.process.join(timeout=5)
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.process.close()


class WorkerPool:
    """A few worker processes, started on first use, each job bounded by a deadline and an address-space
    limit; a worker that is killed, crashes or runs out of memory is replaced by a fresh one.

    Use on one event loop: `async with WorkerPool() as pool: await pool.run(fn, *args)`. `fn` must be a
    module-level function (it is pickled by name) and its arguments and result picklable; keep results
    small (summaries, not whole parsed profiles): they come back through a pipe.
    """

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._slots: asyncio.Semaphore | None = None
        self._pending = 0
        self._closed = False
        self.started = 0  # workers started so far (replacements included)
        self.replaced = 0  # workers killed or lost and replaced

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            with contextlib.suppress(Exception):
                worker.conn.close()  # EOF: the worker exits by itself
            worker.kill()
        if idle:
            await asyncio.to_thread(_reap_all, idle)

    @property
    def idle_workers(self) -> int:
        return len(self._idle)

    async def run(self, fn: Callable[P, T], *args: Any, deadline_seconds: float | None = None) -> T:
        """Run `fn(*args)` in a worker. Raises WorkerError subclasses, or whatever `fn` raised."""
        if self._closed:
            raise RuntimeError("WorkerPool used after it was closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.workers)
        if self._pending >= self.limits.max_pending:
            raise WorkerBusy(
                f"{self._pending} parse jobs are already waiting for a worker (limit max_pending="
                f"{self.limits.max_pending})",
                "max_pending",
                self.limits.max_pending,
            )
        deadline = deadline_seconds if deadline_seconds is not None else self.limits.deadline_seconds
        self._pending += 1
        try:
            await self._slots.acquire()
        finally:
            self._pending -= 1
        try:
            return await self._run_in_worker(fn, args, deadline)
        finally:
            self._slots.release()

    async def _run_in_worker(self, fn: Callable[..., T], args: tuple[Any, ...], deadline: float) -> T:
        worker = self._idle.pop() if self._idle else await self._start()
        healthy = False
        try:
            async with asyncio.timeout(deadline):
                await asyncio.to_thread(worker.conn.send, (fn, args))
                kind, value = await self._receive(worker)
        except TimeoutError:
            raise WorkerTimeout(
                f"the parse took longer than its deadline of {deadline:g}s and was stopped"
                " (limit deadline_seconds; the input is too large or too complex)",
                "deadline_seconds",
                deadline,
            ) from None
        except (EOFError, OSError, BrokenPipeError):
            code = worker.process.exitcode
            raise WorkerCrashed(
                f"the parse worker died (exit code {code}); it is replaced",
                "memory_bytes",
                self.limits.memory_bytes,
            ) from None
        else:
            if kind == "oom":
                raise WorkerOutOfMemory(
                    f"the parse needed more than its memory budget of {self.limits.memory_bytes // MiB} MiB"
                    " (limit memory_bytes, sized from the operator's memory limit)",
                    "memory_bytes",
                    self.limits.memory_bytes,
                )
            healthy = True
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            return value  # type: ignore[no-any-return]
        finally:
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self.replaced += 1
                worker.kill()
                await asyncio.to_thread(worker.reap)

    async def _start(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child, self.limits.memory_bytes), name="memorywatch-parse", daemon=True
        )
        await asyncio.to_thread(process.start)
        child.close()
        worker = _Worker(process, parent)
        self.started += 1
        try:
            async with asyncio.timeout(_STARTUP_SECONDS):
                kind, _ = await self._receive(worker)
        except asyncio.CancelledError:
            worker.kill()
            await asyncio.shield(asyncio.to_thread(worker.reap))
            raise
        except (TimeoutError, EOFError, OSError) as e:
            worker.kill()
            await asyncio.to_thread(worker.reap)
            raise WorkerCrashed(
                f"a parse worker could not start ({type(e).__name__})", "workers", self.limits.workers
            ) from None
        if kind != "ready":
            worker.kill()
            await asyncio.to_thread(worker.reap)
            raise WorkerCrashed(f"a parse worker said {kind!r} at start", "workers", self.limits.workers)
        worker.ready = True
        return worker

    @staticmethod
    async def _receive(worker: _Worker) -> tuple[str, Any]:
        """Wait (without a thread) until the worker has written, then read its whole reply."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = worker.conn.fileno()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        message: tuple[str, Any] = await asyncio.to_thread(worker.conn.recv)
        return message


def operator_memory_limit_bytes(
    environ: dict[str, str] | None = None, cgroup_root: pathlib.Path = pathlib.Path("/sys/fs/cgroup")
) -> int | None:
    """The memory this process may use: `MEMORYWATCH_MEMORY_LIMIT` (bytes; the chart sets it from the
    downward API's `limits.memory`), else the cgroup's `memory.max` (v2) or `memory.limit_in_bytes` (v1).
    None when nothing says (a laptop): callers then use their defaults."""
    env = os.environ if environ is None else environ
    raw = env.get("MEMORYWATCH_MEMORY_LIMIT", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (cgroup_root / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < (1 << 60):  # v1 says "no limit" with a huge number
            return int(text)
    return None


def _reap_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.reap()
