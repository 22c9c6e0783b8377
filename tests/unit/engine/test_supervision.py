"""Supervision inside the engine: an unexpected exception in a rule, the scrape path, the event consumer, a
baseline or a capture becomes a FaultEvent and the target keeps being sampled.

The scraper here is a fake collaborator (samples from a counter, no network): the failures injected are
bugs, which a real target cannot be made to produce. Real targets are in tests/watch.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest

from memorywatch.engine.events import CaptureEvent, Event, FaultEvent, SampleEvent
from memorywatch.engine.watcher import Watcher, WatchSettings
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.heap_growth import HeapGrowth
from memorywatch.rules.model import Probe, RuleKind, RuleSpec
from memorywatch.samples import Sample
from memorywatch.scrape import Limits, NotFound, TargetConfig, TextCapture
from memorywatch.store import FilesystemStore

pytestmark = pytest.mark.timeout(60)

TARGET = TargetConfig("http://127.0.0.1:1", name="fake")
RULES = [
    RuleSpec(name="heap-growth", kind=RuleKind.HEAP_GROWTH, window_seconds=60.0, min_growth=1.0),
    RuleSpec(name="many", kind=RuleKind.THRESHOLD, expression="goroutines > 100", cooldown_seconds=0.0),
]


class FakeScraper:
    """Samples with a rising goroutine count; `fail_samples` makes the next n samples raise a bug."""

    def __init__(self) -> None:
        self.limits = Limits()
        self.count = 0
        self.fail_samples = 0
        self.fail_baseline = 0
        self.fail_profiles = 0

    async def sample(self, target: TargetConfig, *, probes: frozenset[Probe], now: Any) -> Sample:
        if self.fail_samples:
            self.fail_samples -= 1
            raise RuntimeError("a bug in the scrape path")
        self.count += 1
        memstats = MemStats(sys=1 << 30, heap_alloc=1 << 20, num_gc=self.count, next_gc=8 << 20)
        return Sample(target=target.display_name, time=now(), goroutines=90 + self.count, memstats=memstats)

    async def fetch_profile(self, target: TargetConfig, name: str, **kwargs: Any) -> bytes:
        if name == "heap" and kwargs.get("validate") is False and self.fail_baseline:
            self.fail_baseline -= 1
            raise KeyError("a bug while fetching the baseline")
        raise NotFound(target.display_name, name, "HTTP 404")

    async def fetch_profile_info(self, target: TargetConfig, name: str, **kwargs: Any) -> Any:
        if self.fail_profiles:
            self.fail_profiles -= 1
            raise ZeroDivisionError("a bug in the capture")
        raise NotFound(target.display_name, name, "HTTP 404")

    async def fetch_text(self, target: TargetConfig, name: str, **kwargs: Any) -> TextCapture:
        return TextCapture(
            data=b"goroutine profile: total 1\n\n1 @ 0x1\n#\t0x1\tmain.f+0x1\tf.go:1\n\n",
            truncated=False,
            limit_bytes=1 << 20,
        )

    async def parse_in_worker(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


async def watch(
    tmp_path: pathlib.Path,
    scraper: FakeScraper,
    until: Any,
    *,
    consumer_fails: bool = False,
    interval: float = 0.02,
) -> list[Event]:
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if consumer_fails and isinstance(event, SampleEvent):
            raise RuntimeError("the consumer broke")

    settings = WatchSettings(interval_seconds=interval, duration_seconds=20, profiles=("heap",))
    watcher = Watcher(RULES, FilesystemStore(tmp_path), scraper, settings, on_event)  # type: ignore[arg-type]
    watcher.add_target("fake", TARGET)
    runner = asyncio.create_task(watcher.run())
    while not until(events):
        await asyncio.sleep(0.01)
        assert not runner.done(), "the watcher stopped by itself"
    watcher.stop()
    await runner
    return events


def faults(events: list[Event]) -> list[FaultEvent]:
    return [e for e in events if isinstance(e, FaultEvent)]


def samples_after(events: list[Event], event: Event) -> int:
    return sum(isinstance(e, SampleEvent) for e in events[events.index(event) :])


async def test_a_rule_that_raises_is_a_fault_and_the_loop_keeps_sampling(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mock_buggy_observe(self: HeapGrowth, sample: Sample, *, started_at: float) -> Any:
        raise IndexError("a bug in a rule")

    monkeypatch.setattr(HeapGrowth, "observe", mock_buggy_observe)
    scraper = FakeScraper()
    events = await watch(tmp_path, scraper, lambda ev: sum(isinstance(e, SampleEvent) for e in ev) >= 12)
    fault = faults(events)[0]
    assert (fault.target, fault.component, fault.cause) == ("fake", "rule:heap-growth", "IndexError")
    assert "a bug in a rule" in fault.message and fault.retry_seconds is not None
    assert samples_after(events, fault) >= 10
    # Reported the first time and then every tenth in a row, not on every sample.
    assert len([f for f in faults(events) if f.component.startswith("rule:")]) <= 2


async def test_an_unexpected_failure_of_the_scrape_path_backs_off_and_recovers(
    tmp_path: pathlib.Path,
) -> None:
    scraper = FakeScraper()
    scraper.fail_samples = 2
    events = await watch(tmp_path, scraper, lambda ev: sum(isinstance(e, SampleEvent) for e in ev) >= 3)
    loop_faults = [f for f in faults(events) if f.component == "loop"]
    assert [f.cause for f in loop_faults] == ["RuntimeError", "RuntimeError"]
    assert loop_faults[1].retry_seconds == pytest.approx(2 * loop_faults[0].retry_seconds)  # backoff doubles
    assert samples_after(events, loop_faults[-1]) >= 3


async def test_a_consumer_that_raises_does_not_end_the_loop(tmp_path: pathlib.Path) -> None:
    events = await watch(
        tmp_path,
        FakeScraper(),
        lambda ev: sum(isinstance(e, SampleEvent) for e in ev) >= 5,
        consumer_fails=True,
    )
    assert sum(isinstance(e, SampleEvent) for e in events) >= 5


async def test_a_failed_baseline_is_reported_and_retried(tmp_path: pathlib.Path) -> None:
    scraper = FakeScraper()
    scraper.fail_baseline = 1
    events = await watch(
        tmp_path,
        scraper,
        lambda ev: (
            any(isinstance(e, FaultEvent) for e in ev) and sum(isinstance(e, SampleEvent) for e in ev) >= 8
        ),
    )
    fault = next(f for f in faults(events) if f.component == "baseline")
    assert fault.cause == "KeyError" and fault.retry_seconds is not None


async def test_a_capture_that_fails_unexpectedly_is_retried_and_lands(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("memorywatch.engine.watcher.MAX_BACKOFF_SECONDS", 0.05)
    scraper = FakeScraper()
    scraper.fail_profiles = 1
    events = await watch(tmp_path, scraper, lambda ev: any(isinstance(e, CaptureEvent) for e in ev))
    fault = next(f for f in faults(events) if f.component == "capture")
    assert fault.cause == "ZeroDivisionError" and fault.retry_seconds is not None
    capture = next(e for e in events if isinstance(e, CaptureEvent))
    assert capture.rule == "many" and any("heap" in err for err in capture.errors)


def test_fault_events_render_in_json_and_text() -> None:
    from memorywatch.output import _event_line

    event = FaultEvent("pod-a", 1_700_000_000.0, "rule:cel", "CelBudgetError", "over MAX_STEPS", None)
    assert event.as_json()["event"] == "fault" and event.as_json()["component"] == "rule:cel"
    line = _event_line(event)
    assert (
        line is not None
        and "FAULT" in line.plain
        and "rule:cel" in line.plain
        and "not retried" in line.plain
    )
    retried: Mapping[str, Any] = FaultEvent("p", 0.0, "loop", "X", "m", 2.0).as_json()
    assert retried["retrySeconds"] == 2.0


async def test_the_start_an_owner_knows_reaches_the_rules_unless_the_sample_has_its_own(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod's container startedAt (add_target/update_target `started_at`) is what the rules see as the
    process's start when the scrape found none (the young-process hold, rules/base.py)."""
    seen: list[float | None] = []
    wanted, enough = [3], asyncio.Event()
    original = HeapGrowth.observe

    def spy_observe(self: HeapGrowth, sample: Sample, *, started_at: float) -> Any:
        seen.append(sample.process_started_at)
        if len(seen) >= wanted[0]:
            enough.set()
        return original(self, sample, started_at=started_at)

    monkeypatch.setattr(HeapGrowth, "observe", spy_observe)
    settings = WatchSettings(interval_seconds=0.02, duration_seconds=20, profiles=("heap",))
    watcher = Watcher(RULES, FilesystemStore(tmp_path), FakeScraper(), settings, lambda e: None)  # type: ignore[arg-type]
    watcher.add_target("fake", TARGET, started_at=1234.5)
    runner = asyncio.create_task(watcher.run())
    await asyncio.wait_for(enough.wait(), 10)
    watcher.update_target("fake", TARGET, started_at=2345.5)
    wanted[0] = len(seen) + 3
    enough.clear()
    await asyncio.wait_for(enough.wait(), 10)
    watcher.stop()
    await runner
    assert seen[0] == 1234.5 and seen[-1] == 2345.5
