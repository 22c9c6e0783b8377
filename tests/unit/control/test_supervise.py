"""Supervision: faults reported with the cause, backoff that grows and caps, recovery, giving up."""

from __future__ import annotations

import asyncio

import pytest

from memorywatch.control.supervise import Backoff, Supervisor, TaskFault


class RecordingSleep:
    """Records the delays asked for and yields once, instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def make(give_up_after: int = 8) -> tuple[Supervisor, list[TaskFault], list[tuple[str, str]], RecordingSleep]:
    faults: list[TaskFault] = []
    recovered: list[tuple[str, str]] = []
    sleep = RecordingSleep()
    s = Supervisor(
        on_fault=faults.append,
        on_recovered=lambda t, target: recovered.append((t, target)),
        backoff=Backoff(initial_seconds=1, max_seconds=8),
        sleep=sleep,
        give_up_after=give_up_after,
    )
    return s, faults, recovered, sleep


def test_backoff_doubles_and_caps() -> None:
    b = Backoff(initial_seconds=1, max_seconds=8)
    assert [b.delay_seconds(n) for n in range(6)] == [0, 1, 2, 4, 8, 8]


async def test_attempt_reports_the_cause_and_recovers() -> None:
    s, faults, recovered, _ = make()

    async def boom() -> None:
        raise ZeroDivisionError("division by zero in rule x")

    async def fine() -> None:
        return None

    assert await s.attempt("status", boom, target="pod-a") == 1
    assert await s.attempt("status", boom, target="pod-a") == 2
    assert [(f.task, f.target, f.cause, f.consecutive) for f in faults] == [
        ("status", "pod-a", "ZeroDivisionError", 1),
        ("status", "pod-a", "ZeroDivisionError", 2),
    ]
    assert faults[0].message == "division by zero in rule x"
    assert await s.attempt("status", fine, target="pod-a") == 0
    assert recovered == [("status", "pod-a")]
    assert s.failures("status", "pod-a") == 0


async def test_cancellation_is_not_a_fault() -> None:
    s, faults, _, _ = make()

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await s.attempt("x", cancelled)
    assert faults == []


async def test_a_critical_task_that_keeps_failing_sets_failed() -> None:
    s, _, _, _ = make(give_up_after=3)

    async def boom() -> None:
        raise RuntimeError("x")

    for _ in range(5):
        await s.attempt("other", boom)
    assert not s.failed.is_set(), "only critical tasks can stop the controller"
    for _ in range(3):
        await s.attempt("reconcile", boom, critical=True)
    assert s.failed.is_set() and s.failure is not None and s.failure.task == "reconcile"


async def test_spawn_restarts_a_crashing_task_with_backoff() -> None:
    s, faults, _, sleep = make(give_up_after=100)
    runs = 0
    ran_enough = asyncio.Event()

    async def crashes() -> None:
        nonlocal runs
        runs += 1
        if runs >= 4:
            ran_enough.set()
            await asyncio.Event().wait()  # now it stays up
        raise ValueError(f"crash {runs}")

    s.spawn("events", crashes, healthy_seconds=0.05)
    await asyncio.wait_for(ran_enough.wait(), 5)
    assert [f.message for f in faults] == ["crash 1", "crash 2", "crash 3"]
    assert sleep.delays == [1, 2, 4]
    await asyncio.sleep(0.1)
    assert s.failures("events") == 0, "running for healthy_seconds counts as recovered"
    await s.close()


async def test_a_long_running_task_that_returns_is_a_fault() -> None:
    s, faults, _, _ = make(give_up_after=100)
    done = asyncio.Event()

    async def returns() -> None:
        done.set()

    s.spawn("lag", returns)
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.01)
    assert faults and "should run until stopped" in faults[0].message
    await s.close()


async def test_a_failing_reporter_does_not_break_supervision() -> None:
    def bad_report(f: TaskFault) -> None:
        raise RuntimeError("reporter broke")

    s = Supervisor(on_fault=bad_report, on_recovered=lambda t, g: None, sleep=RecordingSleep())

    async def boom() -> None:
        raise KeyError("k")

    assert await s.attempt("x", boom) > 0
