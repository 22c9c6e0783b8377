"""A watch's notifications (control/notifying.py): the messages built from the engine's events, which events go
out, the per-watch rate limit on a fake clock, sink URLs read only from the watch's namespace, failures as
Warning events without the URL; and the controller wired to a real Notifier posting to a real HTTP server on
127.0.0.1 (tests/notify/sink_server.py): a leak's capture arrives there, once, with the watch, pod, rule,
summary and location, while a hanging sink delays no capture."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import pytest
from tests.unit.control.fakes import T0, FakeClock, FakeKube, RecordingActions, SyntheticScraper
from tests.unit.control.harness import Running, body, controller, until

from memorywatch.actions import ActionOutcome, Workload
from memorywatch.api.notify_config import NotifySinkSpec, NotifySpec
from memorywatch.control.notifying import (
    WatchNotifications,
    action_notification,
    breach_notification,
    capture_notification,
    failure_notification,
)
from memorywatch.control.posting import EventPoster
from memorywatch.control.secrets import SecretCache
from memorywatch.engine.events import BreachEvent, CaptureEvent, CaptureFailedEvent
from memorywatch.k8s import ForbiddenError
from memorywatch.notify import (
    EventType,
    FailureHook,
    Notification,
    Notifier,
    NotifyLimits,
    SecretMissing,
    SinkKind,
    SinkSpec,
    UrlResolver,
)
from memorywatch.rules.model import Breach, RuleKind
from notify.sink_server import sink_server

CAPTURE = CaptureEvent(
    "shop-1", T0, "goroutines", "file:///c/ns/mw/shop-1/x", ("heap.pb.gz", "report.html"), "grew by 5000", ()
)
SPEC = NotifySpec((NotifySinkSpec("team", "Webhook", "hook"),), rate_interval_seconds=60, rate_burst=2)
SECRET_URL = "https://hooks.example.com/services/T0/B0/S3CR3T"


class RecordingSender:
    """Stands in for the operator's Notifier: records what a watch queued (the Notifier has its own tests)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Notification, list[SinkSpec], UrlResolver | None, FailureHook | None]] = []

    def send(
        self,
        event: Notification,
        sinks: Sequence[SinkSpec],
        *,
        resolve: UrlResolver | None = None,
        on_failure: FailureHook | None = None,
    ) -> int:
        self.sent.append((event, list(sinks), resolve, on_failure))
        return len(sinks)


class ForbiddenKube(FakeKube):
    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        raise ForbiddenError(f"secrets {name!r} is forbidden", 403)


def notifications(kube: FakeKube, clock: FakeClock, sender: RecordingSender | None) -> WatchNotifications:
    poster = EventPoster(kube, "ns", "mw", "uid", clock)
    return WatchNotifications(sender, poster, SecretCache(kube, clock), "ns", "mw", clock)


def test_messages_carry_the_watch_pod_rule_summary_and_location() -> None:
    n = capture_notification("ns", "mw", "GoroutineGrowth", CAPTURE)
    assert (n.namespace, n.memorywatch, n.pod, n.rule, n.kind) == (
        "ns",
        "mw",
        "shop-1",
        "goroutines",
        "GoroutineGrowth",
    )
    assert n.summary == "grew by 5000" and n.location == CAPTURE.location and n.type is EventType.CAPTURE
    assert n.report == CAPTURE.location + "/report.html" and n.files == 2 and n.time == "2025-10-09T08:53:20Z"
    breach = Breach("goroutines", RuleKind.GOROUTINE_GROWTH, "shop-1", T0, "goroutines grew", {})
    b = breach_notification("ns", "mw", BreachEvent("shop-1", breach))
    assert b.type is EventType.BREACH and b.kind == "GoroutineGrowth" and b.location == ""
    f = failure_notification("ns", "mw", "HeapGrowth", CaptureFailedEvent("shop-1", T0, "heap", "store full"))
    assert f.type is EventType.FAILURE and "store full" in f.summary and f.errors == ("store full",)


def test_an_action_is_notified_when_taken_dry_run_or_refused_not_when_a_guard_skipped_it() -> None:
    deploy = Workload("Deployment", "shop", "ns")
    capture = {"rule": "goroutines", "location": "file:///c/x"}
    done = ActionOutcome("EvictPod", "shop-1", deploy, True, False, "Evicted", "evicted shop-1")
    n = action_notification("ns", "mw", done, T0, capture)
    assert (
        n is not None
        and n.type is EventType.ACTION
        and n.location == "file:///c/x"
        and n.rule == "goroutines"
    )
    assert n.action == "did EvictPod Deployment/shop (Evicted)"
    dry = dataclasses.replace(done, performed=False, dry_run=True, reason="DryRun")
    assert action_notification("ns", "mw", dry, T0, None) is not None
    failed = dataclasses.replace(done, performed=False, reason="Forbidden")
    assert action_notification("ns", "mw", failed, T0, None) is not None
    skipped = dataclasses.replace(done, performed=False, reason="DisruptionBudget")
    assert action_notification("ns", "mw", skipped, T0, capture) is None


async def test_only_the_chosen_events_go_and_the_rate_limit_drops_the_rest() -> None:
    clock, kube, sender = FakeClock(), FakeKube(), RecordingSender()
    w = notifications(kube, clock, sender)
    capture = capture_notification("ns", "mw", "GoroutineGrowth", CAPTURE)
    breach = dataclasses.replace(capture, type=EventType.BREACH)
    assert w.send(SPEC, breach) == "off", "Breach is not in the default events"
    assert w.send(None, capture) == "off" and w.send(dataclasses.replace(SPEC, sinks=()), capture) == "off"
    assert [w.send(SPEC, capture) for _ in range(3)] == ["queued", "queued", "rate-limited"]  # burst 2
    clock.advance(59)
    assert w.send(SPEC, capture) == "rate-limited"
    clock.advance(1)
    assert w.send(SPEC, capture) == "queued", "one more per interval"
    assert w.send(dataclasses.replace(SPEC, events=frozenset({"Breach"})), breach) == "rate-limited"
    assert len(sender.sent) == 3 and sender.sent[0][1] == [SinkSpec("team", SinkKind.WEBHOOK, "hook", "url")]
    await until(lambda: kube.warnings("NotificationRateLimited"), "the rate-limit Warning")
    assert "spec.notify.rateLimit" in kube.warnings("NotificationRateLimited")[0].message
    assert notifications(kube, clock, None).send(SPEC, capture) == "off", (
        "notifications disabled in the chart"
    )


async def test_urls_come_from_the_watch_namespace_and_failures_are_warnings_without_the_url() -> None:
    clock, kube, sender = FakeClock(), FakeKube(), RecordingSender()
    kube.secrets[("ns", "hook")] = {"url": f" {SECRET_URL}\n"}
    kube.secrets[("other", "hook")] = {"url": "https://elsewhere.example.com/"}
    w = notifications(kube, clock, sender)
    w.send(SPEC, capture_notification("ns", "mw", "GoroutineGrowth", CAPTURE))
    _, sinks, resolve, on_failure = sender.sent[0]
    assert resolve is not None and on_failure is not None
    assert await resolve("ns", "hook", "url") == SECRET_URL
    with pytest.raises(SecretMissing, match="only from the watch's namespace ns"):
        await resolve("other", "hook", "url")
    with pytest.raises(
        SecretMissing, match=r"spec.notify.sinks\[\].urlSecretRef: cannot read key 'url' of Secret ns/gone"
    ):
        await resolve("ns", "gone", "url")
    on_failure(sinks[0], "the sink answered HTTP 500 (attempt 5 of 5)")
    await until(lambda: kube.warnings("NotificationFailed"), "the failure Warning")
    message = kube.warnings("NotificationFailed")[0].message
    assert "sink team (Webhook, Secret hook key url)" in message and "HTTP 500" in message
    assert "S3CR3T" not in "".join(e.message for e in kube.events)

    forbidden = notifications(ForbiddenKube(), clock, sender)
    forbidden.send(SPEC, capture_notification("ns", "mw", "GoroutineGrowth", CAPTURE))
    resolve = sender.sent[-1][2]
    assert resolve is not None
    with pytest.raises(
        SecretMissing, match="kubectl"
    ):  # the consent command, as for every Secret a watch names
        await resolve("ns", "hook", "url")


LEAK_RULES = [{"name": "goroutines", "kind": "Threshold", "expression": "goroutines > 120"}]


LIMITS = NotifyLimits(
    request_timeout_seconds=1.0, connect_timeout_seconds=1.0, deadline_seconds=3.0, attempts=2,
    first_backoff_seconds=0.05, allow_http=True, allowed_cidrs=("127.0.0.0/8",),
)  # fmt: skip


async def test_a_capture_reaches_a_real_webhook_once_and_a_hanging_sink_delays_nothing(
    tmp_path: pathlib.Path,
) -> None:
    clock, kube = FakeClock(), FakeKube()
    notify = {
        "sinks": [
            {"name": "hangs", "type": "Webhook", "urlSecretRef": {"name": "hang"}},
            {"name": "team", "type": "Webhook", "urlSecretRef": {"name": "hook", "key": "webhook"}},
        ]
    }
    with sink_server() as server:
        kube.secrets[("ns", "hook")] = {"webhook": server.url("/ok/T0/S3CR3T")}
        kube.secrets[("ns", "hang")] = {"url": server.url("/hang/S3CR3T")}
        async with Notifier(limits=LIMITS) as notifier:
            scraper = SyntheticScraper(clock, growth=50)
            c = controller(tmp_path, kube, clock, scraper, notifier=notifier)
            async with Running(c, body(1, rules=LEAK_RULES, notify=notify)):
                await until(lambda: c.captures, "a capture")
                await until(lambda: server.of("ok"), "the webhook notification", within=15)
                assert server.of("hang"), "the hanging sink was tried"
                # while the hanging sink holds its connection, the watch goes on scraping
                samples = len(scraper.samples)
                await until(lambda: len(scraper.samples) >= samples + 2, "the watch going on")
                assert notifier.pending >= 1 or server.of("hang"), "the hanging sink was still being tried"
            await notifier.join()
        seen = server.of("ok")
    assert len(seen) == 1, [s.body for s in seen]
    got: dict[str, Any] = seen[0].body
    assert got["event"] == "CaptureLanded" and got["namespace"] == "ns" and got["memorywatch"] == "mw"
    assert got["pod"] == "shop-1" and got["rule"] == "goroutines" and got["kind"] == "Threshold"
    assert got["location"] == c.captures[0]["location"] and got["summary"] == c.captures[0]["summary"][:1000]
    failed = kube.warnings("NotificationFailed")
    assert failed and "sink hangs" in failed[0].message and "timed out" in failed[0].message
    assert "S3CR3T" not in "".join(e.message for e in kube.events) + repr(kube.statuses)


async def test_the_kube_event_post_never_blocks_send() -> None:
    class SlowKube(FakeKube):
        async def event(self, *args: Any) -> None:
            await asyncio.sleep(3600)

    clock, sender = FakeClock(), RecordingSender()
    w = notifications(SlowKube(), clock, sender)
    capture = capture_notification("ns", "mw", "GoroutineGrowth", CAPTURE)
    spec = dataclasses.replace(SPEC, rate_burst=1)
    for _ in range(40):  # every one over the limit wants a Warning; the pending posts stay bounded
        w.send(spec, capture)
    assert len(w._posts) <= 16
    for task in list(w._posts):
        task.cancel()
    await w.close()


async def test_the_controller_sends_the_chosen_events_of_a_capture_and_its_action(
    tmp_path: pathlib.Path,
) -> None:
    clock, kube, sender = FakeClock(), FakeKube(), RecordingSender()
    actions = RecordingActions(Workload("Deployment", "shop", "ns"))
    notify = {
        "sinks": [{"name": "team", "type": "Slack", "urlSecretRef": {"name": "hook"}}],
        "events": ["Breach", "Capture", "Action"],
    }
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock, growth=50), actions, notifier=sender)
    spec = body(1, rules=LEAK_RULES, notify=notify, action={"type": "EvictPod", "cooldown": "1h"})
    async with Running(c, spec):
        await until(lambda: len(sender.sent) >= 3, "breach, capture and action notifications")
    kinds = [n.type for n, *_ in sender.sent]
    assert kinds[:3] == [EventType.BREACH, EventType.CAPTURE, EventType.ACTION], kinds
    action = sender.sent[2][0]
    assert (
        action.action == "did EvictPod Deployment/shop (Evicted)"
        and action.location == c.captures[0]["location"]
    )
    assert all(sinks == [SinkSpec("team", SinkKind.SLACK, "hook", "url")] for _, sinks, *_ in sender.sent)
