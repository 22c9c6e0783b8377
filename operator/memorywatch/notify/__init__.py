"""Notifications of landed captures to per-watch sinks: a generic JSON webhook, and Slack-compatible.

    notifier = Notifier(resolve_url)           # resolve_url(namespace, secret, key) -> URL, from the Secret
    await notifier.start()
    notifier.capture_landed(CaptureLanded(...), [SinkSpec("team", SinkKind.SLACK, "leak-alerts")])
    await notifier.close()

`capture_landed` never blocks and never raises: a bounded queue, a few workers, retries with backoff and
a deadline per notification (`NotifyLimits`). `model` is pure (bodies, backoff, URL checks).

Errors::

    NotifyError          anything this package refuses or cannot do
    ├── SinkUrlRefused   the Secret's URL is not one MemoryWatch posts to (scheme, userinfo, address)
    └── SecretMissing    the sink's Secret or key cannot be read in the watch's namespace
"""

from memorywatch.notify.model import (
    SCHEMA,
    CaptureLanded,
    EventType,
    Notification,
    NotifyError,
    SinkKind,
    SinkSpec,
    SinkUrlRefused,
    backoff_delays,
    body_for,
    check_sink_host,
    check_sink_url,
    encode_body,
    event_from_manifest,
    slack_body,
    webhook_body,
)
from memorywatch.notify.notifier import FailureHook, Notifier, NotifyLimits, SecretMissing, UrlResolver
from memorywatch.notify.ratelimit import MAX_BURST, MIN_INTERVAL_SECONDS, RateLimit, TokenBucket

__all__ = [
    "MAX_BURST",
    "MIN_INTERVAL_SECONDS",
    "SCHEMA",
    "CaptureLanded",
    "EventType",
    "FailureHook",
    "Notification",
    "Notifier",
    "NotifyError",
    "NotifyLimits",
    "RateLimit",
    "SecretMissing",
    "SinkKind",
    "SinkSpec",
    "SinkUrlRefused",
    "TokenBucket",
    "UrlResolver",
    "backoff_delays",
    "body_for",
    "check_sink_host",
    "check_sink_url",
    "encode_body",
    "event_from_manifest",
    "slack_body",
    "webhook_body",
]
