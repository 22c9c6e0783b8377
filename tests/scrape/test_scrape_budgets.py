"""Hostile inputs served by real HTTP servers against the parse budgets: each costs only its own scrape (a
typed error naming the limit, or a result parsed in a bounded worker), never the event loop.

The loop-lag bounds below are not speed targets: they are 10-20x above what the parses cost inline before
(8 MiB of /metrics took ~5 s on the loop), so they fail only if the heavy work is back on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from memorywatch.rules.model import Probe
from memorywatch.scrape import Limits, OverBudget, ResponseTooLarge, Scraper, ScrapeTimeout, TargetConfig
from scrape.hostile_servers import (
    RawServer,
    Request,
    big_metrics_text,
    goroutine_groups_text,
    memstats_array_heap_text,
    profile_bomb,
    respond,
    send_chunk,
    start_chunked,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def recorded(go_fixtures_dir: pathlib.Path) -> Callable[[str], bytes]:
    return lambda name: (go_fixtures_dir / name).read_bytes()


def serving(
    recorded: Callable[[str], bytes], **paths: bytes | Callable[[Request, asyncio.StreamWriter], object]
):  # type: ignore[no-untyped-def]
    """Recorded Go output, with `paths` (key: path with '/' as '_', e.g. debug_pprof_heap) replaced."""
    overrides = {"/" + key.replace("_", "/"): value for key, value in paths.items()}

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        debug = "debug=1" in request.target
        key = request.path + ("?debug=1" if debug and request.path + "?debug=1" in overrides else "")
        override = overrides.get(key)
        if callable(override):
            await override(request, writer)  # type: ignore[misc]
        elif override is not None:
            await respond(writer, 200, override)
        elif request.path == "/debug/pprof/":
            await respond(writer, 200, recorded("index.html"), content_type="text/html; charset=utf-8")
        elif request.path == "/debug/pprof/heap" and debug:
            await respond(writer, 200, recorded("heap_debug1.txt"))
        elif request.path == "/debug/pprof/heap":
            await respond(writer, 200, recorded("heap_base.pb.gz"), content_type="application/octet-stream")
        elif request.path == "/debug/pprof/goroutine" and debug:
            await respond(writer, 200, recorded("goroutine_debug1_t0.txt"))
        else:
            await respond(writer, 404, b"404 page not found\n")

    return handler


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """The worst delay of a 10 ms timer on this loop while the block runs, in seconds (one-element list)."""
    worst = [0.0]
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            worst[0] = max(worst[0], time.perf_counter() - started - 0.01)

    task = asyncio.create_task(probe())
    try:
        yield worst
    finally:
        stop.set()
        await task


async def test_a_profile_bomb_is_refused_in_a_worker_naming_the_sample_budget(
    recorded: Callable[[str], bytes],
) -> None:
    bomb = profile_bomb(2_000_000)  # ~60 KiB on the wire
    async with (
        RawServer(serving(recorded, debug_pprof_heap=bomb)) as server,
        Scraper(Limits(max_decompressed_bytes=64 << 20), proc_rss=False) as scraper,
        loop_lag() as lag,
    ):
        with pytest.raises(OverBudget) as caught:
            await scraper.fetch_profile(TargetConfig(server.url), "heap")
    assert caught.value.limit_name == "max_profile_samples"
    assert "200000" in str(caught.value) and "/debug/pprof/heap" in str(caught.value)
    assert lag[0] < 1.0


async def test_a_profile_bomb_as_baseline_is_kept_raw_not_parsed(recorded: Callable[[str], bytes]) -> None:
    bomb = profile_bomb(2_000_000)
    async with (
        RawServer(serving(recorded, debug_pprof_heap=bomb)) as server,
        Scraper(proc_rss=False) as scraper,
    ):
        data = await scraper.fetch_profile(
            TargetConfig(server.url), "heap", validate=False, max_bytes=1 << 20
        )
        assert data == bomb
        assert scraper.workers.started == 0  # nothing was decoded
        with pytest.raises(Exception, match="max_baseline_bytes"):
            await scraper.fetch_profile(TargetConfig(server.url), "heap", validate=False, max_bytes=1024)


async def test_30_mib_of_metrics_parse_in_a_worker_and_the_loop_stays_free(
    recorded: Callable[[str], bytes],
) -> None:
    body = big_metrics_text(30)
    async with (
        RawServer(serving(recorded, metrics=body)) as server,
        Scraper(proc_rss=False) as scraper,
    ):
        async with loop_lag() as lag:
            sample = await scraper.sample(TargetConfig(server.url))
        assert scraper.workers.started >= 1
    assert sample.rss_bytes == 50_000_000 and sample.rss_source == "prometheus"
    assert lag[0] < 2.0


async def test_a_memstats_array_of_200000_entries_is_refused_naming_the_line_budget(
    recorded: Callable[[str], bytes],
) -> None:
    heap = memstats_array_heap_text(200_000)

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, heap)

    async with (
        RawServer(serving(recorded, **{"debug_pprof_heap?debug=1": handler})) as server,
        Scraper(proc_rss=False) as scraper,
    ):
        with pytest.raises(OverBudget) as caught:
            await scraper.sample(TargetConfig(server.url, metrics_path=None))
    assert caught.value.limit_name == "max_line_bytes"


async def test_50000_goroutine_stacks_are_refused_naming_the_group_budget(
    recorded: Callable[[str], bytes],
) -> None:
    stacks = goroutine_groups_text(50_000)
    assert len(stacks) > 1 << 20  # big enough to go to a worker
    async with (
        RawServer(serving(recorded, **{"debug_pprof_goroutine?debug=1": stacks})) as server,
        Scraper(proc_rss=False) as scraper,
        loop_lag() as lag,
    ):
        with pytest.raises(OverBudget) as caught:
            await scraper.sample(
                TargetConfig(server.url, metrics_path=None), probes=frozenset({Probe.GOROUTINE_STACKS})
            )
    assert caught.value.limit_name == "max_goroutine_groups"
    assert lag[0] < 1.0


async def test_a_target_that_hangs_mid_body_costs_only_its_own_timeout(
    recorded: Callable[[str], bytes],
) -> None:
    async def hang(request: Request, writer: asyncio.StreamWriter) -> None:
        await start_chunked(writer)
        await send_chunk(writer, recorded("heap_debug1.txt")[:2000])
        await asyncio.Event().wait()

    async with (
        RawServer(serving(recorded, **{"debug_pprof_heap?debug=1": hang})) as hostile,
        RawServer(serving(recorded)) as healthy,
        Scraper(Limits(read_timeout_seconds=1.0, total_timeout_seconds=3.0), proc_rss=False) as scraper,
    ):
        stuck = asyncio.create_task(scraper.sample(TargetConfig(hostile.url, metrics_path=None)))
        fine = await scraper.sample(TargetConfig(healthy.url, metrics_path=None))
        assert not stuck.done() and fine.goroutines == 50
        with pytest.raises(ScrapeTimeout):
            await stuck


async def test_a_port_forwarded_target_never_reads_rss_from_proc(recorded: Callable[[str], bytes]) -> None:
    async with RawServer(serving(recorded)) as server, Scraper(proc_rss=True) as scraper:
        local = await scraper.sample(TargetConfig(server.url, metrics_path=None))
        forwarded = await scraper.sample(TargetConfig(server.url, metrics_path=None, read_proc_rss=False))
    # 127.0.0.1 here is this test process, as a port-forward's listener is the operator itself.
    assert local.rss_source == "proc"
    assert forwarded.rss_source == "maxrss"


async def test_bodies_held_at_once_are_bounded_across_targets(recorded: Callable[[str], bytes]) -> None:
    big = b"goroutine 1 [running]:\n" + b"x" * (3 << 20)
    async with (
        RawServer(serving(recorded, **{"debug_pprof_goroutine": big})) as server,
        Scraper(Limits(max_buffered_bytes=4 << 20), proc_rss=False) as scraper,
    ):
        target = TargetConfig(server.url)
        first = await scraper.fetch_text(target, "goroutine", params={"debug": 2})
        assert len(first.data) == len(big)  # one fits; its bytes are given back once consumed
        results = await asyncio.gather(
            *(scraper.fetch_text(target, "goroutine", params={"debug": 2}) for _ in range(3)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, ResponseTooLarge)]
        assert refused and all(r.limit_name == "max_buffered_bytes" for r in refused)
        assert any(not isinstance(r, BaseException) for r in results)
        assert scraper._pool is not None and scraper._pool.buffered.held == 0
