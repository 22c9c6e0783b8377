"""memorywatch.control.kopf_toggles: waiters on kopf's operator-wide ToggleSet share one wait on its condition
(kopf's index pre-population otherwise wakes every object's worker on every change: O(N²) at startup)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from kopf._cogs.aiokits import aiotoggles

from memorywatch.control import kopf_toggles


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    before = aiotoggles.ToggleSet.wait_for
    kopf_toggles.install()
    yield
    aiotoggles.ToggleSet.wait_for = before  # type: ignore[method-assign]


def condition_waiters(ts: aiotoggles.ToggleSet) -> int:
    return len(ts._condition._waiters or ())  # type: ignore[attr-defined]


async def test_workers_waiting_for_the_index_share_one_wait_and_all_go_on_when_it_is_populated() -> None:
    """What kopf does at startup with 500 objects: a toggle per object, each worker drops its own and waits."""
    ts = aiotoggles.ToggleSet(all)
    resource = await ts.make_toggle(name="resource kind listed")
    done: list[int] = []

    async def worker(i: int, toggle: aiotoggles.Toggle) -> None:
        await ts.drop_toggle(toggle)
        await ts.wait_for(True)
        done.append(i)

    toggles = [await ts.make_toggle(name=str(i)) for i in range(500)]
    tasks = [asyncio.create_task(worker(i, t)) for i, t in enumerate(toggles)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not done and ts.is_off()
    assert condition_waiters(ts) <= 1  # kopf's own wait_for would have 500 here
    await ts.drop_toggle(resource)
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(done) == list(range(500))


async def test_a_set_already_in_the_state_returns_at_once_and_off_can_be_waited_for() -> None:
    ts = aiotoggles.ToggleSet(any)
    await asyncio.wait_for(ts.wait_for(False), 1)  # no toggles: any() is off
    t = await ts.make_toggle(True)
    await asyncio.wait_for(ts.wait_for(True), 1)
    waiting = asyncio.create_task(ts.wait_for(False))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await t.turn_to(False)
    await asyncio.wait_for(waiting, 1)


async def test_one_cancelled_waiter_does_not_cancel_the_others() -> None:
    ts = aiotoggles.ToggleSet(all)
    t = await ts.make_toggle(False)
    a = asyncio.create_task(ts.wait_for(True))
    b = asyncio.create_task(ts.wait_for(True))
    await asyncio.sleep(0.01)
    a.cancel()
    await asyncio.sleep(0.01)
    assert a.cancelled() and not b.done()
    await t.turn_to(True)
    await asyncio.wait_for(b, 1)
