"""A MemoryWatch's notifications (`spec.notify`): which events go out, at what rate, with what in them, and
what a failure looks like to the watch's owner.

`WatchNotifications.send(spec, notification)` is synchronous and returns at once: it checks the watch's event
list and token bucket, then hands the notification to the operator's shared `notify.Notifier` (a lane per
watch, never in the way of a capture or an action). Sink URLs are read at send time from Secrets in the watch's
own namespace through the watch's `SecretCache`; a sink that fails is a Warning `NotificationFailed` event on
the watch and `memorywatch_notifications_total{result="failed"}`, naming the sink and its Secret, never the
URL. The `*_notification` functions build the message from the engine's events (pure).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Protocol

from memorywatch import metrics
from memorywatch.actions import ActionOutcome
from memorywatch.api.consent import ConsentTarget, secret_problem
from memorywatch.api.notify_config import NotifySpec
from memorywatch.control.ports import Clock
from memorywatch.control.posting import EventPoster
from memorywatch.control.secrets import SecretCache
from memorywatch.control.status import iso
from memorywatch.engine.events import BreachEvent, CaptureEvent, CaptureFailedEvent
from memorywatch.k8s import ForbiddenError, KubeError
from memorywatch.notify import (
    EventType,
    FailureHook,
    Notification,
    RateLimit,
    SecretMissing,
    SinkKind,
    SinkSpec,
    TokenBucket,
    UrlResolver,
)
from memorywatch.rules.model import RuleSpec

log = logging.getLogger(__name__)
MAX_PENDING_POSTS = 16


def capture_notification(namespace: str, name: str, kind: str, e: CaptureEvent) -> Notification:
    report = f"{e.location.rstrip('/')}/report.html" if "report.html" in e.files else None
    return Notification(
        namespace, name, e.target, e.rule, kind, iso(e.time), e.summary, e.location, report,
        files=len(e.files), errors=e.errors, type=EventType.CAPTURE,
    )  # fmt: skip


def breach_notification(namespace: str, name: str, e: BreachEvent) -> Notification:
    b = e.breach
    return Notification(
        namespace, name, e.target, b.rule, str(b.kind), iso(b.time), b.message, "", type=EventType.BREACH
    )


def failure_notification(namespace: str, name: str, kind: str, e: CaptureFailedEvent) -> Notification:
    return Notification(
        namespace, name, e.target, e.rule, kind, iso(e.time), f"the capture failed: {e.error}", "",
        errors=(e.error,), type=EventType.FAILURE,
    )  # fmt: skip


def action_notification(
    namespace: str, name: str, o: ActionOutcome, now: float, capture: dict[str, object] | None
) -> Notification | None:
    """An action taken, decided in dryRun, or refused by the API server; None for an action that was not
    attempted (a cooldown or guard said no: status.lastActions has it, no one needs to be paged)."""
    if not (o.performed or o.dry_run or o.reason in ("Failed", "Forbidden")):
        return None
    subject = str(o.workload) if o.workload is not None else f"Pod/{o.pod}"
    done = "dry run of" if o.dry_run else ("did" if o.performed else "failed to")
    capture = capture or {}
    return Notification(
        namespace, name, o.pod, str(capture.get("rule", "")), o.action, iso(now), o.message,
        str(capture.get("location", "")), action=f"{done} {o.action} {subject} ({o.reason})",
        type=EventType.ACTION,
    )  # fmt: skip


class Sender(Protocol):
    """What a watch needs of the operator's `notify.Notifier`."""

    def send(
        self,
        event: Notification,
        sinks: Sequence[SinkSpec],
        *,
        resolve: UrlResolver | None = None,
        on_failure: FailureHook | None = None,
    ) -> int: ...


def sinks_of(spec: NotifySpec) -> list[SinkSpec]:
    return [SinkSpec(s.name, SinkKind(s.type), s.secret_name, s.secret_key) for s in spec.sinks]


class WatchNotifications:
    def __init__(
        self,
        notifier: Sender | None,
        poster: EventPoster,
        secrets: SecretCache,
        namespace: str,
        name: str,
        clock: Clock,
    ) -> None:
        self._notifier = notifier
        self._poster = poster
        self._secrets = secrets
        self.namespace = namespace
        self.name = name
        self._clock = clock
        self._bucket: TokenBucket | None = None
        self._posts: set[asyncio.Task[None]] = set()

    def send(self, spec: NotifySpec | None, n: Notification) -> str:
        """Queue `n` to the watch's sinks: "queued", "off" (no sinks, event not chosen, or notifications
        disabled in the chart) or "rate-limited". Never blocks, never raises."""
        if self._notifier is None or spec is None or not spec.sinks or not spec.wants(str(n.type)):
            return "off"
        now = self._clock()
        limit = RateLimit(spec.rate_interval_seconds, spec.rate_burst)
        if self._bucket is None:
            self._bucket = TokenBucket(limit, now)
        self._bucket.reconfigure(limit, now)
        sinks = sinks_of(spec)
        if not self._bucket.take(now):
            for sink in sinks:
                metrics.NOTIFICATIONS.labels(sink=str(sink.kind).lower(), result="rate-limited").inc()
            self._post(
                "NotificationRateLimited",
                f"the {n.type} notification of pod {n.pod} was not sent: over spec.notify.rateLimit "
                f"({limit.burst} at once, then one per {limit.interval_seconds:g}s)",
            )
            return "rate-limited"
        self._notifier.send(n, sinks, resolve=self._resolve, on_failure=self._failed)
        return "queued"

    async def _resolve(self, namespace: str, secret: str, key: str) -> str:
        """A sink's URL, from a Secret in the watch's own namespace only (the watch's cache)."""
        field = "spec.notify.sinks[].urlSecretRef"
        if namespace != self.namespace:  # cannot happen through send(); a guard all the same
            raise SecretMissing(f"{field}: Secrets are read only from the watch's namespace {self.namespace}")
        try:
            value = await self._secrets.get(namespace, secret, key)
        except ForbiddenError as e:
            target = ConsentTarget.from_env(os.environ)
            raise SecretMissing(
                secret_problem(
                    e, forbidden=True, namespace=namespace, secret=secret, field=field, target=target
                )
            ) from None
        except KubeError as e:
            raise SecretMissing(
                f"{field}: cannot read key {key!r} of Secret {namespace}/{secret}: {e}"
            ) from None
        return value.value.strip()

    def _failed(self, sink: SinkSpec, why: str) -> None:
        self._post(
            "NotificationFailed",
            f"notification to sink {sink.name} ({sink.kind}, Secret {sink.secret_name} key {sink.secret_key}) "
            f"failed: {why}",
        )

    def _post(self, reason: str, message: str) -> None:
        """A Warning event on the watch, in the background and bounded (identical ones fold into a count)."""
        if len(self._posts) >= MAX_PENDING_POSTS:
            log.warning("%s/%s: %s (event not posted: too many pending)", self.namespace, self.name, message)
            return
        task = asyncio.ensure_future(self._post_now(reason, message))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post_now(self, reason: str, message: str) -> None:
        try:
            await self._poster.on_watch("Warning", reason, message)
        except Exception as e:  # noqa: BLE001 - the event is a courtesy; the log and the metric have it
            log.warning("%s/%s: could not post %s: %s", self.namespace, self.name, reason, e)

    async def close(self) -> None:
        if self._posts:
            await asyncio.gather(*self._posts, return_exceptions=True)


def kind_of(rules: Sequence[RuleSpec], rule: str) -> str:
    """The kind of the watch's rule named `rule` ("" when unknown)."""
    return next((str(r.kind) for r in rules if r.name == rule), "")
