"""The scraper against real Go processes (tests/gotargets) on 127.0.0.1: what a user's Go service really serves."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import os
import pathlib
import time

import pytest
import trustme

from memorywatch.pprof.goroutines import parse_goroutine_debug1
from memorywatch.rules.engine import START_TIME_TOLERANCE_SECONDS, restart_reason
from memorywatch.rules.model import Probe
from memorywatch.scrape import (
    NotFound,
    Scraper,
    TargetConfig,
    TargetUnreachable,
    TLSConfig,
    TLSFailure,
    Unauthorized,
)
from support.gotargets import GoTargetFactory

pytestmark = pytest.mark.slow

TOKEN = "gotarget-bearer-7f3a9c"
MiB = 1024 * 1024


def status_rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_heap_leak_target_gives_memstats_live_heap_and_goroutines(gotarget: GoTargetFactory) -> None:
    target = gotarget("heap-leak", rate=16 * MiB)
    config = TargetConfig(target.url, name="heap-leak")
    async with Scraper(proc_rss=False) as scraper:
        first = await scraper.sample(config)
        await asyncio.sleep(2.5)
        later = await scraper.sample(config)
    for sample in (first, later):
        assert sample.target == "heap-leak"
        assert sample.goroutines is not None and sample.goroutines >= 2
        assert sample.memstats is not None and sample.memstats.sys and sample.memstats.num_gc is not None
        assert sample.rss_source == "maxrss" and sample.rss_bytes == sample.memstats.max_rss
        assert sample.goroutine_profile is None  # not asked for
    assert first.memstats and later.memstats and later.memstats.num_gc and first.memstats.num_gc is not None
    assert later.memstats.num_gc > first.memstats.num_gc
    # ~40 MiB retained in 2.5 s. The heap profile lags up to two GC cycles (GC points come at doubling
    # heap sizes), so only a part of it shows yet; a clear rise is what the rules need.
    assert later.heap_live_bytes is not None and first.heap_live_bytes is not None
    assert later.heap_live_bytes - first.heap_live_bytes > 4 * MiB
    assert later.heap_live_objects and later.heap_live_objects > 0


async def test_metrics_give_current_rss_threads_and_finalizer_counters(gotarget: GoTargetFactory) -> None:
    target = gotarget("finalizer-leak", rate=500, metrics=True)
    async with Scraper(proc_rss=False) as scraper:
        sample = await scraper.sample(TargetConfig(target.url))
    assert sample.rss_source == "prometheus"
    assert sample.rss_bytes is not None
    assert abs(sample.rss_bytes - status_rss_bytes(target.pid)) < 16 * MiB
    assert sample.threads is not None and sample.threads >= 2
    assert sample.finalizers_queued is not None and sample.finalizers_executed is not None


async def test_proc_rss_for_a_loopback_target_without_metrics(gotarget: GoTargetFactory) -> None:
    target = gotarget("heap-leak", rate=8 * MiB)
    async with Scraper(proc_rss=True) as scraper:
        sample = await scraper.sample(TargetConfig(target.url, metrics_path=None))
        await asyncio.sleep(1.5)
        later = await scraper.sample(TargetConfig(target.url, metrics_path=None))
    assert sample.rss_source == "proc" and later.rss_source == "proc"
    assert sample.rss_bytes is not None and later.rss_bytes is not None
    assert abs(later.rss_bytes - status_rss_bytes(target.pid)) < 16 * MiB
    assert later.rss_bytes > sample.rss_bytes  # current, not a peak: it follows the leak


async def test_custom_prefix(gotarget: GoTargetFactory) -> None:
    target = gotarget("healthy", prefix="/internal/prof")
    async with Scraper() as scraper:
        sample = await scraper.sample(TargetConfig(target.url, pprof_path="/internal/prof"))
        assert sample.goroutines and sample.memstats is not None
        with pytest.raises(NotFound) as caught:
            await scraper.sample(TargetConfig(target.url))
    assert "/debug/pprof/" in str(caught.value) and "pprof path" in str(caught.value)


async def test_bearer_token(gotarget: GoTargetFactory) -> None:
    target = gotarget("healthy", token=TOKEN, metrics=True)
    async with Scraper() as scraper:
        sample = await scraper.sample(TargetConfig(target.url, bearer_token=TOKEN))
        assert sample.memstats is not None and sample.rss_source == "prometheus"
        profile = await scraper.fetch_profile(TargetConfig(target.url, bearer_token=TOKEN), "heap")
        assert gzip.decompress(profile)
        for wrong in ("not-the-token", None):
            config = TargetConfig(target.url, bearer_token=wrong)
            with pytest.raises(Unauthorized) as caught:
                await scraper.sample(config)
            assert TOKEN not in str(caught.value) and "bearer token Secret" in str(caught.value)
            assert "not-the-token" not in str(caught.value) and "not-the-token" not in repr(config)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "pprof.internal")
    named_only = ca.issue_cert("pprof.internal")
    files = {
        "ca": folder / "ca.pem",
        "other_ca": folder / "other-ca.pem",
        "cert": folder / "cert.pem",
        "key": folder / "key.pem",
        "named_cert": folder / "named-cert.pem",
        "named_key": folder / "named-key.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    other_ca.cert_pem.write_to_path(str(files["other_ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    named_only.cert_chain_pems[0].write_to_path(str(files["named_cert"]))
    named_only.private_key_pem.write_to_path(str(files["named_key"]))
    return {name: str(path) for name, path in files.items()}


async def test_tls_with_the_right_and_a_wrong_ca(
    gotarget: GoTargetFactory, tls_files: dict[str, str]
) -> None:
    target = gotarget("healthy", tls_cert=tls_files["cert"], tls_key=tls_files["key"], token=TOKEN)
    assert target.url.startswith("https://")
    async with Scraper() as scraper:
        good = TargetConfig(target.url, bearer_token=TOKEN, tls=TLSConfig(ca_file=tls_files["ca"]))
        sample = await scraper.sample(good)
        assert sample.memstats is not None
        wrong = TargetConfig(target.url, bearer_token=TOKEN, tls=TLSConfig(ca_file=tls_files["other_ca"]))
        with pytest.raises(TLSFailure) as caught:
            await scraper.sample(wrong)
        skip = TargetConfig(target.url, bearer_token=TOKEN, tls=TLSConfig(insecure_skip_verify=True))
        assert (await scraper.sample(skip)).memstats is not None
    assert "certificate verify failed" in str(caught.value) and TOKEN not in str(caught.value)


async def test_tls_server_name_for_a_certificate_that_does_not_name_the_ip(
    gotarget: GoTargetFactory, tls_files: dict[str, str]
) -> None:
    target = gotarget("healthy", tls_cert=tls_files["named_cert"], tls_key=tls_files["named_key"])
    async with Scraper() as scraper:
        by_ip = TargetConfig(target.url, tls=TLSConfig(ca_file=tls_files["ca"]))
        with pytest.raises(TLSFailure):
            await scraper.sample(by_ip)
        named = TargetConfig(target.url, tls=TLSConfig(ca_file=tls_files["ca"], server_name="pprof.internal"))
        assert (await scraper.sample(named)).memstats is not None


async def test_plain_http_target_scraped_over_https_is_a_tls_failure(gotarget: GoTargetFactory) -> None:
    target = gotarget("healthy")
    async with Scraper() as scraper:
        https = TargetConfig(target.url.replace("http://", "https://"), tls=TLSConfig())
        with pytest.raises(TLSFailure) as caught:
            await scraper.sample(https)
    assert "plain HTTP" in str(caught.value)


async def test_goroutine_stacks_probe(gotarget: GoTargetFactory) -> None:
    target = gotarget("goroutine-leak", rate=200)
    await asyncio.sleep(1.0)
    async with Scraper() as scraper:
        began = time.monotonic()
        sample = await scraper.sample(TargetConfig(target.url), probes=frozenset({Probe.GOROUTINE_STACKS}))
        took = time.monotonic() - began
    profile = sample.goroutine_profile
    assert profile is not None and sample.goroutines is not None
    # Two reads of a growing count (200/s, added in 0.1 s batches): they agree within what the leak adds while
    # the sample is taken, plus one batch and a few connection goroutines.
    assert abs(profile.total - sample.goroutines) <= 200 * (took + 0.1) + 5
    biggest = max(profile.groups, key=lambda group: group.count)
    assert biggest.count >= 100
    assert any("main.blockForever" in frame.function for frame in biggest.frames)


async def test_restarted_target_recovers_on_the_next_interval(gotarget: GoTargetFactory) -> None:
    target = gotarget("heap-leak", rate=8 * MiB, metrics=True)
    config = TargetConfig(target.url)
    async with Scraper() as scraper:
        await scraper.sample(config)
        await asyncio.sleep(2.0)
        before = await scraper.sample(config)  # leaves keep-alive connections in the pool
        old_pid = target.pid
        target.kill()
        with pytest.raises(TargetUnreachable):
            await scraper.sample(config)
        target.start()
        assert target.pid != old_pid
        after = await scraper.sample(config)  # the very next interval works: no wedged pool
    assert before.memstats and after.memstats
    assert before.memstats.total_alloc and after.memstats.total_alloc is not None
    assert after.memstats.total_alloc < before.memstats.total_alloc  # counters went back
    assert after.memstats.mallocs is not None and before.memstats.mallocs is not None
    assert after.memstats.mallocs < before.memstats.mallocs
    assert after.rss_source == "prometheus"
    # The restart signal that needs no counter to go down: the new process started later.
    assert before.process_start_seconds is not None and after.process_start_seconds is not None
    assert after.process_start_seconds - before.process_start_seconds > START_TIME_TOLERANCE_SECONDS
    assert restart_reason(before, dataclasses.replace(after, memstats=before.memstats)) is not None


async def test_restart_between_samples_without_a_failed_interval(gotarget: GoTargetFactory) -> None:
    target = gotarget("healthy", startup_step=0)
    config = TargetConfig(target.url)
    async with Scraper() as scraper:
        for _ in range(3):
            first = await scraper.sample(config)
            target.restart()  # the pool still holds the dead process's idle connections
            again = await scraper.sample(config)
            assert again.memstats and first.memstats
            assert again.memstats.total_alloc is not None and first.memstats.total_alloc is not None


async def test_profiles_stacks_and_expvar(gotarget: GoTargetFactory) -> None:
    target = gotarget("goroutine-leak", rate=50, expvar=True)
    config = TargetConfig(target.url)
    async with Scraper() as scraper:
        for name in ("heap", "allocs", "goroutine", "block", "mutex", "threadcreate"):
            data = await scraper.fetch_profile(config, name)
            assert data[:2] == b"\x1f\x8b", name  # gzip, exactly as Go serves it
        cpu = await scraper.fetch_profile(config, "cpu", params={"seconds": 1})
        assert gzip.decompress(cpu)
        stacks = await scraper.fetch_text(config, "goroutine", params={"debug": 2})
        groups = await scraper.fetch_text(config, "goroutine", params={"debug": 1})
        snapshot = await scraper.expvar(config)
    assert not stacks.truncated and stacks.data.startswith(b"goroutine ")
    assert b"main.blockForever" in stacks.data
    assert parse_goroutine_debug1(groups.data.decode()).total > 0
    assert snapshot.memstats is not None and snapshot.memstats.sys
    assert snapshot.cmdline and "goroutine-leak" in " ".join(snapshot.cmdline)


async def test_many_concurrent_samples_share_one_pool(gotarget: GoTargetFactory) -> None:
    targets = [gotarget("healthy", startup_step=0) for _ in range(3)]
    configs = [TargetConfig(t.url) for t in targets]
    fds_before = len(os.listdir("/proc/self/fd"))  # what the rest of the test session holds open
    async with Scraper() as scraper:
        for _ in range(3):
            samples = await asyncio.gather(*(scraper.sample(c) for c in configs for _ in range(5)))
            assert all(s.memstats is not None for s in samples)
        assert scraper.remembered_targets == 3
        # Connections were reused across rounds, not opened per request (45 samples, 90 requests).
        assert len(os.listdir("/proc/self/fd")) - fds_before < 40
