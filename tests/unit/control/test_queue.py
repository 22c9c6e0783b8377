"""The bounded engine-event queue: samples dropped first, breaches and captures never."""

from __future__ import annotations

from tests.unit.control.fakes import T0

from memorywatch.control.queue import EventQueue
from memorywatch.engine.events import BreachEvent, CaptureEvent, NoteEvent, SampleEvent
from memorywatch.rules.model import Breach, RuleKind
from memorywatch.samples import Sample


def sample(i: int) -> SampleEvent:
    return SampleEvent("p", Sample(target="p", time=T0 + i), {})


def breach(i: int) -> BreachEvent:
    return BreachEvent("p", Breach("r", RuleKind.HEAP_GROWTH, "p", T0 + i, "grew", {}))


def capture(i: int) -> CaptureEvent:
    return CaptureEvent("p", T0 + i, "r", f"file:///{i}", (), "s")


def drain(q: EventQueue) -> list[object]:
    out = []
    while (e := q.get_nowait()) is not None:
        out.append(e)
    return out


def test_samples_go_first_when_full() -> None:
    q = EventQueue(max_events=3)
    q.put_nowait(sample(1))
    q.put_nowait(breach(2))
    q.put_nowait(sample(3))
    q.put_nowait(capture(4))
    assert drain(q) == [breach(2), sample(3), capture(4)]
    assert q.dropped["sample"] == 1


def test_then_notes_and_never_breaches_or_captures() -> None:
    q = EventQueue(max_events=2)
    q.put_nowait(NoteEvent("p", T0, "n"))
    q.put_nowait(breach(1))
    q.put_nowait(breach(2))
    q.put_nowait(capture(3))
    assert drain(q) == [breach(1), breach(2), capture(3)], "over the size only by what is never dropped"
    assert q.dropped["note"] == 1


def test_a_sample_into_a_queue_full_of_breaches_is_dropped() -> None:
    q = EventQueue(max_events=1)
    q.put_nowait(breach(1))
    q.put_nowait(sample(2))
    assert drain(q) == [breach(1)]
    assert q.dropped["sample"] == 1


async def test_get_waits_for_the_next_event() -> None:
    import asyncio

    q = EventQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.put_nowait(sample(1))
    assert await asyncio.wait_for(getter, 1) == sample(1)
