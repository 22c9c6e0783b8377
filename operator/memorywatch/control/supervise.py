"""Task supervision: a task that raises unexpectedly is reported (a `TaskFault`, which the controller turns into
the Degraded condition and a Warning event) and restarted with exponential backoff. Cancellation is never a
fault. Expected failures (the API server being away) are the task's own business and should not reach here.

Two shapes: `spawn` keeps a long-running coroutine alive (the event consumer, the lag probe); `attempt` runs one
iteration of periodic work (a reconcile, a status write, an action) and says how long to wait before the next.
A task that fails `give_up_after` times in a row without a success in between sets `failed`: the controller
cannot go on, and its kopf daemon fails so that kopf restarts it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from memorywatch.control.ports import Sleep

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 300


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Delays between restarts: initial, doubling, capped."""

    initial_seconds: float = 1.0
    max_seconds: float = 60.0
    factor: float = 2.0

    def delay_seconds(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.max_seconds, self.initial_seconds * self.factor ** (failures - 1)))


@dataclasses.dataclass(frozen=True)
class TaskFault:
    """A supervised task failed. `task` names it (`status`, `events`, `reconcile`, `action`, ...), `target` the
    pod it was working for ("" for the whole watch), `cause` the exception's class, `message` its text
    (bounded), `retry_seconds` when it runs again (None: never)."""

    task: str
    target: str
    cause: str
    message: str
    retry_seconds: float | None
    consecutive: int


def describe(e: BaseException) -> tuple[str, str]:
    """(cause, message) of an exception, bounded, fit for status and events."""
    text = str(e).replace("\n", " ").strip() or type(e).__name__
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return type(e).__name__, text


class Supervisor:
    def __init__(
        self,
        *,
        on_fault: Callable[[TaskFault], None],
        on_recovered: Callable[[str, str], None],
        backoff: Backoff = Backoff(),
        sleep: Sleep = asyncio.sleep,
        give_up_after: int = 8,
    ) -> None:
        self._on_fault = on_fault
        self._on_recovered = on_recovered
        self._backoff = backoff
        self._sleep = sleep
        self._give_up_after = give_up_after
        self._failures: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.failed = asyncio.Event()
        self.failure: TaskFault | None = None

    def failures(self, task: str, target: str = "") -> int:
        return self._failures.get((task, target), 0)

    def _fault(self, task: str, target: str, e: Exception, *, retry: bool, critical: bool) -> TaskFault:
        key = (task, target)
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        cause, message = describe(e)
        retry_seconds = self._backoff.delay_seconds(count) if retry else None
        fault = TaskFault(task, target, cause, message, retry_seconds, count)
        log.warning(
            "task %s%s failed (%s: %s), %s",
            task,
            f" for {target}" if target else "",
            cause,
            message,
            f"retrying in {retry_seconds:.0f}s" if retry_seconds is not None else "not retried",
            exc_info=e,
        )
        try:
            self._on_fault(fault)
        except Exception:  # reporting must never take the supervisor down with it
            log.exception("could not report the failure of task %s", task)
        if critical and count >= self._give_up_after and self.failure is None:
            self.failure = fault
            self.failed.set()
        return fault

    def _success(self, task: str, target: str) -> None:
        if self._failures.pop((task, target), 0):
            try:
                self._on_recovered(task, target)
            except Exception:
                log.exception("could not report the recovery of task %s", task)

    async def attempt(
        self,
        task: str,
        work: Callable[[], Awaitable[None]],
        *,
        target: str = "",
        retry: bool = True,
        critical: bool = False,
    ) -> float:
        """Run one iteration of `work`. Returns 0 after a success, else the backoff before trying again. A
        `critical` task failing `give_up_after` times in a row sets `failed`."""
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - supervision: every unexpected failure is reported, not lost
            fault = self._fault(task, target, e, retry=retry, critical=critical)
            return fault.retry_seconds or 0.0
        self._success(task, target)
        return 0.0

    def spawn(
        self,
        task: str,
        work: Callable[[], Awaitable[None]],
        *,
        target: str = "",
        healthy_seconds: float = 60.0,
    ) -> asyncio.Task[None]:
        """Keep `work` running: restart it with backoff whenever it raises (or returns). A run that lasted
        `healthy_seconds` counts as a recovery, so a task failing once a day never exhausts its budget."""

        async def keep() -> None:
            while True:
                inner = asyncio.ensure_future(work())
                try:
                    done, _ = await asyncio.wait({inner}, timeout=healthy_seconds)
                    if not done:  # running for a while again: it has recovered
                        self._success(task, target)
                    await inner
                except asyncio.CancelledError:
                    inner.cancel()
                    raise
                except Exception as e:  # noqa: BLE001 - supervision
                    fault = self._fault(task, target, e, retry=True, critical=True)
                else:  # a long-running task must not return
                    fault = self._fault(task, target, _Returned(task), retry=True, critical=True)
                await self._sleep(fault.retry_seconds or 0.0)

        t = asyncio.create_task(keep(), name=f"supervised {task} {target}".strip())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def close(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Returned(RuntimeError):
    def __init__(self, task: str) -> None:
        super().__init__(f"task {task} ended although it should run until stopped")
