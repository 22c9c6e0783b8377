"""The fleet simulator and the engine benchmark work: a small fleet for a few seconds.

Nothing here asserts a speed or a memory figure (those are measured by hack/bench-engine and written in
docs/scaling.md); it checks that what the simulator serves parses as Go's, that its series have the
shapes the benchmark relies on (leaks grow, healthy targets stay flat), that it counts every request, and
that the benchmark harness runs end to end and reports what it claims to.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.fleet import Binaries, Fleet, FleetTarget, build_fleetsim, run_goscraper
from memorywatch.pprof.goroutines import parse_goroutine_debug1
from memorywatch.pprof.heap_text import HeapText, parse_heap_text
from memorywatch.pprof.index import parse_index
from memorywatch.pprof.profiles import parse_profile
from memorywatch.pprof.prometheus_text import parse_prometheus_text
from memorywatch.scrape import Scraper, TargetConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
KINDS = {"healthy", "sawtooth", "burst", "heap-leak", "goroutine-leak", "nonheap-leak", "finalizer-leak"}
HOUR = 3600.0


@pytest.fixture(scope="module")
def binaries() -> Binaries:
    return build_fleetsim()


@pytest.fixture(scope="module")
def fleet(binaries: Binaries) -> Iterator[Fleet]:
    with Fleet(binaries, count=14, ips=2, metrics_fraction=0.5) as running:
        yield running


def get(target: FleetTarget, path: str) -> str:
    answer = httpx.get(target.url + path, timeout=10, trust_env=False)
    answer.raise_for_status()
    return answer.text


def heap(target: FleetTarget) -> HeapText:
    return parse_heap_text(get(target, "/debug/pprof/heap?debug=1"))


def by_kind(fleet: Fleet, kind: str) -> FleetTarget:
    return next(t for t in fleet.targets if t.kind == kind)


def test_address_plan_and_mix(fleet: Fleet) -> None:
    hosts = {t.addr.rsplit(":", 1)[0] for t in fleet.targets}
    assert hosts == {"127.0.0.1", "127.0.0.2"}
    assert {t.kind for t in fleet.targets} == KINDS  # the interleaved mix: every kind in a small fleet
    assert 0 < sum(t.metrics for t in fleet.targets) < len(fleet.targets)


def test_every_endpoint_parses_as_go_output(fleet: Fleet) -> None:
    for target in fleet.targets:
        text = heap(target)
        assert text.records == 60 and text.live_bytes_estimate > 10 * 2**20
        assert text.memstats is not None and text.memstats.pause_ns is not None
        assert text.memstats.pause_end is not None
        assert len(text.memstats.pause_ns) == len(text.memstats.pause_end) == 256
        assert all(text.memstats.pause_end) and text.memstats.last_gc == max(text.memstats.pause_end)
        index = parse_index(get(target, "/debug/pprof/"))
        stacks = parse_goroutine_debug1(get(target, "/debug/pprof/goroutine?debug=1"))
        assert abs(index["goroutine"] - stacks.total) <= 20  # two reads, a few simulated seconds apart
        answer = httpx.get(target.url + "/metrics", timeout=10, trust_env=False)
        if target.metrics:
            assert parse_prometheus_text(answer.text).rss_bytes is not None
        else:
            assert answer.status_code == 404
    some = fleet.targets[0]
    proto = httpx.get(some.url + "/debug/pprof/heap", timeout=10, trust_env=False).content
    assert parse_profile(proto, 1 << 28).sample_types  # the simulator's own real heap profile
    assert "goroutine 1 [" in get(some, "/debug/pprof/goroutine?debug=2")


def _non_heap(target: FleetTarget) -> int:
    prom = parse_prometheus_text(get(target, "/metrics"))
    stats = heap(target).memstats
    assert prom.rss_bytes is not None and stats is not None
    assert stats.sys is not None and stats.heap_released is not None
    return prom.rss_bytes - (stats.sys - stats.heap_released)


def test_series_have_their_shapes(binaries: Binaries) -> None:
    mix = "healthy:1,heap-leak:1,goroutine-leak:1,nonheap-leak:1"
    # One simulated hour per real second: a second apart, the leaks have grown by an hour's worth.
    with Fleet(binaries, count=4, mix=mix, metrics_fraction=1.0, speed=HOUR) as fleet:
        kinds = {k: by_kind(fleet, k) for k in ("healthy", "heap-leak", "goroutine-leak", "nonheap-leak")}
        before_heap = {k: heap(t).live_bytes_estimate for k, t in kinds.items()}
        before_g = parse_index(get(kinds["goroutine-leak"], "/debug/pprof/"))["goroutine"]
        before_gap = _non_heap(kinds["nonheap-leak"])
        time.sleep(1.0)
        after_heap = {k: heap(t).live_bytes_estimate for k, t in kinds.items()}
        after_g = parse_index(get(kinds["goroutine-leak"], "/debug/pprof/"))["goroutine"]
        after_gap = _non_heap(kinds["nonheap-leak"])
    # At the default rates an hour adds ~900 MiB of heap, ~14 400 goroutines, ~900 MiB outside the heap.
    assert after_heap["heap-leak"] - before_heap["heap-leak"] > 500 * 2**20
    assert after_g - before_g > 10_000
    assert after_gap - before_gap > 500 * 2**20
    assert abs(after_heap["healthy"] - before_heap["healthy"]) < 0.1 * before_heap["healthy"]


def test_counts_every_request_and_serves_added_targets(binaries: Binaries) -> None:
    with Fleet(binaries, count=2) as fleet:
        first = fleet.targets[0]
        get(first, "/debug/pprof/")
        heap(first)
        heap(first)
        httpx.get(first.url + "/nowhere", timeout=10, trust_env=False)
        (added,) = fleet.add(["127.0.0.3:0 heap-leak"])
        assert added.kind == "heap-leak" and added.addr.startswith("127.0.0.3:")
        assert heap(added).records == 60
        counts = fleet.counts()
    assert counts[first.addr] == {
        "index": 1,
        "heap": 2,
        "metrics": 0,
        "goroutine": 0,
        "profile": 0,
        "other": 1,
    }
    assert counts[fleet.targets[1].addr]["heap"] == 0
    assert counts[added.addr]["heap"] == 1


def test_serves_exactly_the_addresses_of_a_file(binaries: Binaries) -> None:
    # As the scale test will for kwok pod IPs: one line per target, optionally with its kind.
    with Fleet(binaries, addresses=["127.0.0.4:0 goroutine-leak", "127.0.0.5:0"]) as fleet:
        first, second = fleet.targets
        assert first.addr.startswith("127.0.0.4:") and first.kind == "goroutine-leak"
        assert second.addr.startswith("127.0.0.5:") and second.kind in KINDS  # from the mix
        assert parse_index(get(second, "/debug/pprof/"))["goroutine"] > 0


def test_refuses_addresses_outside_loopback(binaries: Binaries) -> None:
    with Fleet(binaries, count=1) as fleet, pytest.raises(Exception, match="only loopback"):
        fleet.add(["10.0.0.1:8080"])


async def test_the_engine_scraper_reads_the_fleet(fleet: Fleet) -> None:
    with_metrics = next(t for t in fleet.targets if t.metrics)
    async with Scraper(proc_rss=False) as scraper:
        sample = await scraper.sample(TargetConfig(with_metrics.url))
    assert sample.rss_source == "prometheus" and sample.goroutines and sample.memstats is not None


def test_go_scraper_scrapes_the_fleet(binaries: Binaries, fleet: Fleet) -> None:
    before = fleet.counts()
    report = run_goscraper(binaries, [t.addr for t in fleet.targets], seconds=1.0, concurrency=4)
    after = fleet.counts()
    assert report["errors"] == 0 and report["samples"] > 0
    # Each sample is one index and one heap request (plus one warm-up sample per target).
    heaps = sum(after[a]["heap"] - before[a]["heap"] for a in after)
    assert heaps == report["samples"] + len(fleet.targets)
    assert all(after[a]["metrics"] == before[a]["metrics"] for a in after)


@pytest.mark.slow
def test_bench_engine_runs_every_phase(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "report.json"
    argv = [
        sys.executable,
        str(ROOT / "hack" / "bench-engine"),
        "--targets=4",
        "--seconds=1",
        "--interval=1s",
        "--memory-targets=2",
        "--memory-speedup=300",
        "--memory-timeout=60",
        "--steady-seconds=1",
        "--tracemalloc",
        f"--json={out}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    for phase in ("ceiling", "paced"):
        assert report[phase]["samples"] > 0 and report[phase]["samples_per_cpu_second"] > 0
        assert report[phase]["lag_p99_ms"] >= report[phase]["lag_p50_ms"] >= 0
    assert report["go"]["samples"] > 0 and report["go"]["errors"] == 0
    memory = report["memory"]
    assert memory["windows_full"] and memory["min_samples_per_target"] >= 240
    assert memory["per_target_full_kib"] > 0
    assert memory["steady"]["samples"] > 0 and memory["retained_per_target_kib"]["recent_samples"] > 0
    assert memory["traced_per_target_kib"] > 0 and memory["traced_by_file_kib"]
    assert "engine/Go samples per CPU-second" in done.stdout


def test_fleet_outlives_nothing(binaries: Binaries) -> None:
    fleet = Fleet(binaries, count=1).start()
    pid = fleet.pid
    fleet.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
