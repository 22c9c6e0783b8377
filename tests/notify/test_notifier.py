"""Notifications delivered over real HTTP (a threaded server on 127.0.0.1 playing the sinks), for captures the
engine takes from a real heap-leaking Go process.

Aspects: one JSON notification per capture per sink (generic webhook and Slack-compatible); a hanging and a
failing sink delay and lose no capture, and the healthy sink still gets every notification; a flaky sink is
retried with backoff; redirects are not followed; a full queue drops (and counts) rather than blocks; a
missing Secret or a refused URL is reported by name; the URL never reaches a log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import ssl
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from memorywatch.engine.capture import DEFAULT_PROFILES, CaptureRequest, capture, take_baseline
from memorywatch.notify import (
    CaptureLanded,
    Notifier,
    NotifyLimits,
    SecretMissing,
    SinkKind,
    SinkSpec,
    event_from_manifest,
)
from memorywatch.rules.model import Breach, RuleKind
from memorywatch.scrape import Scraper, TargetConfig
from memorywatch.store import FilesystemStore
from notify.sink_server import sink_server
from support.gotargets import GoTarget

pytestmark = pytest.mark.timeout(120)
FAST = NotifyLimits(
    first_backoff_seconds=0.05,
    max_backoff_seconds=0.2,
    request_timeout_seconds=1.0,
    connect_timeout_seconds=1.0,
    deadline_seconds=5.0,
    allow_http=True,
    allowed_cidrs=("127.0.0.0/8",),
)
EVENT = CaptureLanded(
    "shop",
    "checkout",
    "checkout-0",
    "heap-growth",
    "HeapGrowth",
    "2026-12-01T10:00:00Z",
    "grew",
    "file:///c/1",
)


def _resolver(urls: dict[str, str]) -> Any:
    async def resolve(namespace: str, secret: str, key: str) -> str:
        assert namespace == "shop"
        if secret not in urls:
            raise SecretMissing(f"Secret {namespace}/{secret} has no key {key!r}")
        return urls[secret]

    return resolve


def _count(sink: str, result: str) -> float:
    return (
        REGISTRY.get_sample_value("memorywatch_notifications_total", {"sink": sink, "result": result}) or 0.0
    )


async def _captures(url: str, store: FilesystemStore, n: int, notify: Any) -> list[str]:
    """n captures of the target, each announced to `notify` as soon as it is stored; returns their locations."""
    target = TargetConfig(url=url)
    locations = []
    async with Scraper() as scraper:
        baseline = await take_baseline(scraper, target, time.time())
        for i in range(n):
            await asyncio.sleep(1.0)
            breach = Breach(
                "heap-growth", RuleKind.HEAP_GROWTH, target.display_name, time.time(), f"grew ({i})", {}
            )
            request = CaptureRequest(
                "shop", "checkout", f"checkout-{i}", target, [breach], DEFAULT_PROFILES, [], baseline
            )
            result = await capture(scraper, store, request, time.time())
            notify(event_from_manifest(result.manifest, result.location))
            locations.append(result.location)
    return locations


@pytest.fixture
def leaking(gotarget_binary: pathlib.Path, tmp_path: pathlib.Path) -> Any:
    with GoTarget(gotarget_binary, "heap-leak", rate=4 * 1024 * 1024, log_dir=tmp_path) as target:
        yield target


@pytest.mark.slow
async def test_one_json_notification_per_capture_per_sink(leaking: GoTarget, tmp_path: pathlib.Path) -> None:
    with sink_server() as server:
        sinks = [
            SinkSpec("team-hook", SinkKind.WEBHOOK, "hook"),
            SinkSpec("team-slack", SinkKind.SLACK, "slack"),
        ]
        resolve = _resolver({"hook": server.url("/ok/hook"), "slack": server.url("/ok/slack")})
        async with Notifier(resolve, FAST) as notifier:
            locations = await _captures(
                leaking.url, FilesystemStore(tmp_path / "s"), 3, lambda e: notifier.capture_landed(e, sinks)
            )
        hooks = [s for s in server.of("ok") if s.path == "/ok/hook"]
        slacks = [s for s in server.of("ok") if s.path == "/ok/slack"]
    assert sorted(h.body["location"] for h in hooks) == sorted(locations)
    assert all(h.content_type == "application/json" and h.body["event"] == "CaptureLanded" for h in hooks)
    assert all(
        h.body["summary"].startswith("grew (") and h.body["report"] == h.body["location"] + "/report.html"
        for h in hooks
    )
    assert len(slacks) == 3 and all("heap-growth" in s.body["text"] for s in slacks)


@pytest.mark.slow
async def test_hanging_and_failing_sinks_delay_and_lose_no_capture(
    leaking: GoTarget, tmp_path: pathlib.Path
) -> None:
    failed_before = _count("webhook", "failed")
    with sink_server() as server:
        sinks = [
            SinkSpec("hangs", SinkKind.WEBHOOK, "hang"),
            SinkSpec("fails", SinkKind.WEBHOOK, "fail"),
            SinkSpec("works", SinkKind.WEBHOOK, "ok"),
        ]
        resolve = _resolver(
            {"hang": server.url("/hang/x"), "fail": server.url("/fail/x"), "ok": server.url("/ok/x")}
        )
        async with Notifier(resolve, FAST) as notifier:
            queued = []
            store = FilesystemStore(tmp_path / "s")
            locations = await _captures(
                leaking.url, store, 3, lambda e: queued.append(notifier.capture_landed(e, sinks))
            )
            # Every capture landed, complete, while the hanging sink held its connections.
            assert queued == [3, 3, 3] and len(store.list()) == 3
            assert server.of("hang"), "the hanging sink was being tried while captures were taken"
            await asyncio.wait_for(notifier.join(), 30)
        delivered = sorted(s.body["location"] for s in server.of("ok"))
        fails = server.of("fail")
    assert delivered == sorted(locations)
    assert len(fails) == 3 * FAST.attempts  # each failing notification tried `attempts` times, then given up
    assert _count("webhook", "failed") - failed_before == 6  # 3 failing + 3 hanging (timed out every attempt)


async def test_a_flaky_sink_is_retried_with_backoff() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with sink_server() as server:
        resolve = _resolver({"s": server.url("/flaky/x")})
        async with Notifier(resolve, FAST, sleep=sleep, jitter=lambda: 1.0) as notifier:
            notifier.capture_landed(EVENT, [SinkSpec("flaky", SinkKind.WEBHOOK, "s")])
            await asyncio.wait_for(notifier.join(), 10)
        assert len(server.of("flaky")) == 3
    assert slept == [0.05, 0.1]


async def test_redirects_are_not_followed_and_a_full_queue_drops() -> None:
    with sink_server() as server:
        resolve = _resolver({"r": server.url("/redirect/x")})
        async with Notifier(resolve, FAST) as notifier:
            notifier.capture_landed(EVENT, [SinkSpec("moves", SinkKind.WEBHOOK, "r")])
            await asyncio.wait_for(notifier.join(), 10)
        assert len(server.of("redirect")) == 1 and not server.of("ok")

    dropped_before = _count("slack", "dropped")
    stalled = Notifier(resolve, NotifyLimits(queue_size=2))  # never started: nothing drains the queue
    assert stalled.capture_landed(EVENT, [SinkSpec(f"s{i}", SinkKind.SLACK, "r") for i in range(5)]) == 2
    assert stalled.pending == 2 and _count("slack", "dropped") - dropped_before == 3
    # A watch's own lane is bounded too, so one watch cannot fill the queue for the others.
    told: list[str] = []
    lanes = Notifier(resolve, NotifyLimits(queue_size=100, per_watch_queue=3))
    sinks = [SinkSpec(f"s{i}", SinkKind.SLACK, "r") for i in range(5)]
    assert lanes.send(EVENT, sinks, on_failure=lambda sink, why: told.append(why)) == 3
    other = dataclasses.replace(EVENT, memorywatch="payments")
    assert lanes.send(other, sinks[:3]) == 3 and lanes.pending == 6
    assert len(told) == 2 and all("queue is full" in why and "notify.queueSize" in why for why in told)


async def test_the_url_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    token = "T0SECRET/B0SECRET/XOXSECRETTOKEN"
    caplog.set_level(logging.DEBUG)
    with sink_server() as server:
        urls = {
            "fails": server.url(f"/fail/{token}?token={token}"),
            "refused": f"http://127.0.0.1:1/{token}",  # nothing listens on port 1: connection refused
            "metadata": f"http://169.254.169.254/{token}",
        }
        sinks = [SinkSpec(name, SinkKind.SLACK, name) for name in [*urls, "missing"]]
        async with Notifier(_resolver(urls), FAST) as notifier:
            notifier.capture_landed(EVENT, sinks)
            await asyncio.wait_for(notifier.join(), 20)
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "SECRET" not in text
    assert "cannot notify sink fails" in text and "HTTP 500" in text
    assert "cannot notify sink refused" in text and "connection failed" in text
    assert "cannot notify sink metadata" in text and "link-local" in text and "notify.allowedCIDRs" in text
    assert "Secret shop/missing has no key 'url'" in text


async def test_https_goes_to_the_checked_address_and_verifies_the_name() -> None:
    """The request connects to the address the egress rule checked, yet TLS verifies (and Host names) the URL's
    host: a certificate for another name is refused, so pinning never weakens https."""
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    # .test names resolve nowhere but in this table: reaching the server at all proves the request went to the
    # address the egress rule checked, not to a second lookup.
    dns = {"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    limits = dataclasses.replace(FAST, allow_http=False, attempts=1)
    with sink_server(tls=server_ctx) as server:
        urls = {
            "good": server.url("/ok/x", host="hooks.test", scheme="https"),
            "wrong": server.url("/ok/y", host="other.test", scheme="https"),
        }
        told: list[str] = []
        async with Notifier(
            _resolver(urls), limits, resolve_host=lambda h: dns[h], verify=client_ctx
        ) as notifier:
            sinks = [SinkSpec("good", SinkKind.WEBHOOK, "good"), SinkSpec("wrong", SinkKind.WEBHOOK, "wrong")]
            notifier.send(EVENT, sinks, on_failure=lambda sink, why: told.append(f"{sink.name}: {why}"))
            await asyncio.wait_for(notifier.join(), 10)
        seen = server.of("ok")
    assert [s.path for s in seen] == ["/ok/x"] and seen[0].host == f"hooks.test:{server.server_address[1]}"
    assert len(told) == 1 and told[0].startswith("wrong: connection failed (ConnectError"), told


async def test_a_hanging_sink_holds_only_its_own_lane() -> None:
    """Three notifications stuck behind one watch's hanging sink; another watch's (and the same watch's other)
    sink is served at once, while the hanging one still holds its connection."""
    with sink_server() as server:
        resolve = _resolver({"hang": server.url("/hang/x"), "ok": server.url("/ok/x")})
        limits = dataclasses.replace(
            FAST, workers=2, request_timeout_seconds=20.0, deadline_seconds=30.0, attempts=1
        )
        async with Notifier(resolve, limits) as notifier:
            for _ in range(3):
                notifier.capture_landed(EVENT, [SinkSpec("hangs", SinkKind.WEBHOOK, "hang")])
            other = dataclasses.replace(EVENT, memorywatch="payments")
            notifier.capture_landed(other, [SinkSpec("works", SinkKind.WEBHOOK, "ok")])
            notifier.capture_landed(EVENT, [SinkSpec("works-too", SinkKind.WEBHOOK, "ok")])
            for _ in range(250):
                if len(server.of("ok")) == 2:
                    break
                await asyncio.sleep(0.02)
            assert len(server.of("ok")) == 2, "the healthy sinks were served while the other lane hung"
            assert len(server.of("hang")) == 1 and notifier.pending == 3, (
                "one hanging job at a time, two waiting"
            )
            server.release.set()
            await asyncio.wait_for(notifier.join(), 10)
        assert len(server.of("hang")) == 3
