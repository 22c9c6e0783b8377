"""What the confirmation stage and the blind-spot notes read, from real Go processes: the largest heap sites
with in-use and allocated bytes, goroutine IDs from a debug=2 dump (only when asked), and a heap profile
turned off with MemProfileRate=0 reported as unknown, never as a live heap of 0."""

from __future__ import annotations

import asyncio
import time

import pytest

from memorywatch.rules.model import Probe
from memorywatch.scrape import Scraper, TargetConfig
from support.gotargets import GoTargetFactory

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


async def test_heap_sites_show_the_leaking_site_keeping_what_it_allocates(gotarget: GoTargetFactory) -> None:
    target = gotarget("heap-leak", rate=8 * MiB, churn=32 * MiB)
    config = TargetConfig(target.url)
    async with Scraper(proc_rss=False) as scraper:
        await asyncio.sleep(1)  # the profile is as of the last GC: let the leaking site show up first
        first = await scraper.sample(config)
        await asyncio.sleep(3)
        later = await scraper.sample(config)
    assert first.heap_sites and later.heap_sites and len(later.heap_sites) <= 32
    assert later.heap_profile_rate == 512 * 1024
    before = {key: (inuse, alloc) for key, inuse, alloc in first.heap_sites}
    grown = [
        (inuse - before[key][0], alloc - before[key][1])
        for key, inuse, alloc in later.heap_sites
        if key in before and inuse - before[key][0] > 4 * MiB
    ]
    assert grown, "the retaining site is among the largest and keeps its key"
    d_inuse, d_alloc = max(grown)
    assert d_inuse >= 0.5 * d_alloc, "a leaking site keeps what it allocates"


LEAK_STEP_SECONDS = 0.1  # tests/gotargets/behaviours.go leakStep


async def test_goroutine_ids_come_only_when_asked(gotarget: GoTargetFactory) -> None:
    rate = 200
    target = gotarget("goroutine-leak", rate=rate)
    config = TargetConfig(target.url)
    async with Scraper(proc_rss=False) as scraper:
        plain = await scraper.sample(config)
        await asyncio.sleep(1.0)  # a few hundred leaked goroutines, so the dump has something to count
        started = time.monotonic()
        first = await scraper.sample(config, probes=frozenset({Probe.GOROUTINE_DUMP}))
        took = time.monotonic() - started
        await asyncio.sleep(1.5)
        later = await scraper.sample(config, probes=frozenset({Probe.GOROUTINE_DUMP}))
    assert plain.goroutine_ids is None
    assert first.goroutine_ids is not None and later.goroutine_ids is not None
    # The count and the dump are two requests and the leak goes on between them, in batches of a tenth of a
    # second (20 goroutines): they agree within what it leaks while the sample is taken, plus one batch.
    assert first.goroutines is not None and first.goroutines >= 100
    slack = rate * (took + LEAK_STEP_SECONDS) + 5
    assert first.goroutine_ids.complete and abs(first.goroutine_ids.total - first.goroutines) <= slack
    # Past MAX_SAMPLED_IDS a dump keeps a hash-sample of its IDs (on a slow machine `later` has more than 512
    # goroutines): two dumps are compared at the lower of their thresholds, as the rules compare them.
    threshold = min(first.goroutine_ids.threshold, later.goroutine_ids.threshold)
    before = first.goroutine_ids.at(threshold)
    kept = before & later.goroutine_ids.at(threshold)
    # A few goroutines serve the scraper's HTTP connections (two per connection, more under load) and come
    # and go; the hundreds the leak made keep their IDs.
    assert len(before) >= 20 and len(kept) >= len(before) - 16, "leaked goroutines keep their IDs"
    assert later.goroutine_ids.total >= first.goroutine_ids.total + 150


async def test_mem_profile_rate_zero_is_unknown_live_heap_not_zero(gotarget: GoTargetFactory) -> None:
    target = gotarget("heap-leak", rate=4 * MiB, mem_profile_rate=0)
    async with Scraper(proc_rss=False) as scraper:
        sample = await scraper.sample(TargetConfig(target.url))
    assert sample.heap_profile_rate == 0
    assert sample.heap_live_bytes is None and sample.heap_live_objects is None and sample.heap_sites is None
    assert sample.memstats is not None and sample.memstats.heap_alloc, "MemStats still come"
