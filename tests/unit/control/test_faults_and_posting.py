"""The fault book (what Degraded shows, when it clears) and aggregated fault events."""

from __future__ import annotations

from tests.unit.control.fakes import T0, FakeClock, FakeKube

from memorywatch.control.faults import Fault, FaultBook
from memorywatch.control.posting import EventPoster


def fault(
    target: str = "p", component: str = "rule:x", t: float = T0, cause: str = "RecursionError"
) -> Fault:
    return Fault(target, component, cause, "too deep", t, 2.0)


def test_a_fault_clears_a_quiet_period_after_the_component_works_again() -> None:
    book = FaultBook(quiet_seconds=15)
    book.record(fault())
    book.sample_ok("p", T0 + 1)
    assert book.active(T0 + 5), "shown for the quiet period at least"
    assert book.active(T0 + 15) == []


def test_a_fault_repeating_every_tick_stays() -> None:
    book = FaultBook(quiet_seconds=15)
    for i in range(10):
        book.record(fault(t=T0 + 5 * i))
        book.sample_ok("p", T0 + 5 * i + 1)
        assert [f.cause for f in book.active(T0 + 5 * i + 2)] == ["RecursionError"]


def test_captures_clear_only_on_a_capture_and_old_faults_are_forgotten() -> None:
    book = FaultBook(quiet_seconds=0, forget_seconds=600)
    book.record(fault(component="capture"))
    book.sample_ok("p", T0 + 1)
    assert book.active(T0 + 2)
    book.capture_ok("p", T0 + 3)
    assert book.active(T0 + 3) == []
    book.record(fault(component="loop"))
    assert book.active(T0 + 599) and book.active(T0 + 600) == []


def test_describe_names_pod_component_cause_and_retry() -> None:
    assert fault().describe() == "pod p, rule:x: RecursionError: too deep (retrying in 2s)"
    watch_level = Fault("", "status", "RuntimeError", "boom", T0, None)
    assert watch_level.describe() == "status: RuntimeError: boom (not retried)"


async def test_fault_events_are_aggregated() -> None:
    clock, kube = FakeClock(), FakeKube()
    poster = EventPoster(kube, "ns", "mw", "uid", clock, fault_every_seconds=600)
    assert await poster.fault(fault())
    for _ in range(5):
        clock.advance(10)
        assert not await poster.fault(fault())
    assert await poster.fault(fault(cause="MemoryError")), "another cause is news"
    clock.advance(600)
    assert await poster.fault(fault())
    messages = [e.message for e in kube.warnings("Degraded")]
    assert len(messages) == 3
    assert messages[2].endswith("(5 more since the last report)")
    assert all(e.kind == "MemoryWatch" and e.name == "mw" for e in kube.events)
