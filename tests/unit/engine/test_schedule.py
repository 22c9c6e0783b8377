"""We check that many targets added together are sampled spread over the interval (no lockstep burst), that
each keeps a stable phase, and that a small watch still takes its first sample at once.

The scraper is a fake collaborator that records when each target was sampled (no network): the question is
the Watcher's schedule, not scraping. Real targets are in tests/watch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import pathlib
import time
from typing import Any

import pytest

from memorywatch.engine import schedule
from memorywatch.engine.events import Event
from memorywatch.engine.watcher import Watcher, WatchSettings
from memorywatch.rules.model import Probe, RuleKind, RuleSpec
from memorywatch.samples import Sample
from memorywatch.scrape import Limits, NotFound, TargetConfig
from memorywatch.store import FilesystemStore

pytestmark = pytest.mark.timeout(60)


def test_a_phase_is_stable_and_inside_the_interval() -> None:
    phases = [schedule.phase_seconds(f"ns/pod-{i}", 15.0) for i in range(1000)]
    assert phases == [schedule.phase_seconds(f"ns/pod-{i}", 15.0) for i in range(1000)]
    assert all(0.0 <= p < 15.0 for p in phases)
    assert schedule.phase_seconds("ns/pod-1", 30.0) == pytest.approx(2 * phases[1])


def test_a_thousand_targets_spread_evenly_over_the_interval() -> None:
    per_second = collections.Counter(
        int(schedule.phase_seconds(f"team-a/api-{i:04d}", 15.0)) for i in range(1000)
    )
    # 66.7 per second on average; a lockstep start would put all 1,000 in the first.
    assert set(per_second) == set(range(15))
    assert max(per_second.values()) < 100 and min(per_second.values()) > 40, per_second


def test_only_a_watch_with_many_targets_delays_the_first_sample() -> None:
    small, many = schedule.SMALL_WATCH_TARGETS, schedule.SMALL_WATCH_TARGETS + 1
    assert schedule.first_sample_delay("ns/pod", 15.0, small) == 0.0
    assert schedule.first_sample_delay("ns/pod", 15.0, many) == schedule.phase_seconds("ns/pod", 15.0)
    assert schedule.first_sample_delay("ns/pod", 0.0, many) == 0.0  # back to back: nothing to spread


class RecordingScraper:
    """Samples at once and records the monotonic time of each target's samples."""

    def __init__(self, targets: int) -> None:
        self.limits = Limits()
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.targets = targets
        self.all_sampled = asyncio.Event()

    async def sample(self, target: TargetConfig, *, probes: frozenset[Probe], now: Any) -> Sample:
        self.times[target.display_name].append(time.monotonic())
        if len(self.times) == self.targets:
            self.all_sampled.set()
        return Sample(target=target.display_name, time=now(), goroutines=10)

    async def fetch_profile(self, target: TargetConfig, name: str, **kwargs: Any) -> bytes:
        raise NotFound(target.display_name, name, "HTTP 404")

    async def fetch_text(self, target: TargetConfig, name: str, **kwargs: Any) -> Any:
        raise NotFound(target.display_name, name, "HTTP 404")


async def first_samples(tmp_path: pathlib.Path, targets: int, interval: float) -> tuple[float, list[float]]:
    scraper = RecordingScraper(targets)
    events: list[Event] = []
    rules = [RuleSpec(name="many", kind=RuleKind.THRESHOLD, expression="goroutines > 100")]
    settings = WatchSettings(interval_seconds=interval, profiles=("heap",))
    watcher = Watcher(rules, FilesystemStore(tmp_path), scraper, settings, events.append)  # type: ignore[arg-type]
    for i in range(targets):
        watcher.add_target(f"ns/pod-{i}", TargetConfig(f"http://127.0.0.1:{1000 + i}", name=f"pod-{i}"))
    started = time.monotonic()
    runner = asyncio.create_task(watcher.run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(scraper.all_sampled.wait(), 3 * interval)
    watcher.stop()
    await runner
    assert len(scraper.times) == targets, "every target was sampled within the first interval"
    return started, [times[0] - started for times in scraper.times.values()]


async def test_many_targets_added_together_take_their_first_samples_across_the_interval(
    tmp_path: pathlib.Path,
) -> None:
    interval = 1.0
    _, offsets = await first_samples(tmp_path, 40, interval)
    assert max(offsets) < interval + 0.5
    assert max(offsets) - min(offsets) > 0.5 * interval, "spread over the interval, not a burst"
    at_once = sum(offset < 0.05 for offset in offsets)
    assert at_once < 10, f"{at_once} of 40 sampled in the first 50 ms"


async def test_a_small_watch_takes_its_first_sample_at_once(tmp_path: pathlib.Path) -> None:
    _, offsets = await first_samples(tmp_path, 2, 30.0)
    assert max(offsets) < 2.0, offsets
