"""What a notification says and where it may go: pure values and functions, no I/O.

A sink is one entry of a MemoryWatch's `spec.notify.sinks` (docs/review.md#notifications): a kind
(`Webhook` with MemoryWatch's own JSON body, or `Slack` for Slack incoming webhooks and compatible
receivers such as Mattermost) and a reference to the Secret key holding its URL, in the watch's namespace.
The URL is a secret (Slack's embeds the credential): it is never logged, put in status, events or metrics.
Where a URL may point is the operator's one egress rule for tenant-given hosts (`store.policy.check_addresses`).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from memorywatch.store.policy import EgressRefused, Resolver, check_addresses

SCHEMA = "memorywatch.io/capture-notification/v1"
MAX_TEXT_CHARS = 1000


class NotifyError(Exception):
    """Root of this package's errors."""


class SinkUrlRefused(NotifyError):
    """A sink URL that MemoryWatch will not post to; the message names the rule, never the URL."""


class SinkKind(enum.StrEnum):
    WEBHOOK = "Webhook"
    SLACK = "Slack"


class EventType(enum.StrEnum):
    """What a watch may notify about (`spec.notify.events`), and the `event` its body names."""

    BREACH = "Breach"  # a rule fired (LeakDetected), before the capture
    CAPTURE = "Capture"  # a capture was stored (CaptureLanded)
    ACTION = "Action"  # an action was taken, or decided in dryRun, or failed (ActionTaken)
    FAILURE = "Failure"  # a capture failed (CaptureFailed)

    @property
    def body_event(self) -> str:
        return _BODY_EVENTS[self]


_BODY_EVENTS = {
    EventType.BREACH: "LeakDetected",
    EventType.CAPTURE: "CaptureLanded",
    EventType.ACTION: "ActionTaken",
    EventType.FAILURE: "CaptureFailed",
}
_TITLES = {
    EventType.BREACH: "leak detected",
    EventType.CAPTURE: "profiles captured",
    EventType.ACTION: "action",
    EventType.FAILURE: "capture failed",
}


@dataclasses.dataclass(frozen=True)
class SinkSpec:
    """One sink of a watch: `name` for logs and metrics, the Secret (in the watch's namespace) and its key."""

    name: str
    kind: SinkKind
    secret_name: str
    secret_key: str = "url"


@dataclasses.dataclass(frozen=True)
class CaptureLanded:
    """What a notification says: a capture that was stored, or (`type`) a breach, an action or a failure."""

    namespace: str
    memorywatch: str
    pod: str
    rule: str
    kind: str
    time: str  # RFC 3339, UTC
    summary: str
    location: str
    report: str | None = None  # location of report.html, when the capture has one
    files: int = 0
    errors: tuple[str, ...] = ()
    action: str | None = None
    type: EventType = EventType.CAPTURE


Notification = CaptureLanded


def _cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def webhook_body(event: CaptureLanded) -> dict[str, Any]:
    """The generic webhook's JSON body (documented in docs/review.md; `schema` names its version)."""
    return {
        "schema": SCHEMA,
        "event": event.type.body_event,
        "namespace": event.namespace,
        "memorywatch": event.memorywatch,
        "pod": event.pod,
        "rule": event.rule,
        "kind": event.kind,
        "time": event.time,
        "summary": _cut(event.summary),
        "location": event.location,
        "report": event.report,
        "files": event.files,
        "errors": [_cut(e, 300) for e in event.errors[:10]],
        "action": event.action,
    }


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters; the data comes from the pod, so no mention or link can be forged."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: CaptureLanded) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (for notifications and compatible receivers) plus blocks."""
    where = f"{event.namespace}/{event.memorywatch}"
    what = _TITLES[event.type]
    title = (
        f":rotating_light: MemoryWatch {_slack_escape(where)}: {what}, {_slack_escape(event.kind)} "
        f"in pod {_slack_escape(event.pod)}"
    )
    lines = [
        f"*{_slack_escape(event.rule)}* fired at {_slack_escape(event.time)}",
        _slack_escape(_cut(event.summary)),
    ]
    if event.location:
        lines.append(f"Capture: `{_slack_escape(event.location)}` ({event.files} files)")
    if event.report:
        lines.append(f"Report: `{_slack_escape(event.report)}`")
    if event.errors:
        lines.append(f"Not captured: {_slack_escape(_cut('; '.join(event.errors[:3]), 300))}")
    if event.action:
        lines.append(f"Action: {_slack_escape(event.action)}")
    text = title + "\n" + "\n".join(lines)
    return {
        "text": text,
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _cut(f"MemoryWatch {where}: {what}, {event.kind}", 150),
                },
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), 3000)}},
        ],
    }


def body_for(kind: SinkKind, event: CaptureLanded) -> dict[str, Any]:
    return slack_body(event) if kind is SinkKind.SLACK else webhook_body(event)


def encode_body(kind: SinkKind, event: CaptureLanded, max_bytes: int) -> bytes:
    """The JSON body, at most `max_bytes`: the summary and errors are cut further until it fits."""
    body = json.dumps(body_for(kind, event)).encode()
    for summary_chars in (300, 100, 0):
        if len(body) <= max_bytes:
            return body
        event = dataclasses.replace(event, summary=_cut(event.summary, max(summary_chars, 1)), errors=())
        body = json.dumps(body_for(kind, event)).encode()
    if len(body) > max_bytes:
        raise NotifyError(f"the notification body is {len(body)} bytes, over the {max_bytes}-byte limit")
    return body


def backoff_delays(
    attempts: int, *, first_seconds: float, cap_seconds: float, jitter: Callable[[], float]
) -> list[float]:
    """Waits between `attempts` tries: doubling from `first_seconds`, capped, each scaled by jitter() in [0.5, 1]."""
    delays = []
    for n in range(max(attempts - 1, 0)):
        delays.append(min(cap_seconds, first_seconds * 2**n) * (0.5 + 0.5 * min(max(jitter(), 0.0), 1.0)))
    return delays


def check_sink_url(url: str, *, allow_http: bool = False) -> str:
    """The URL if its form is one MemoryWatch posts to, else SinkUrlRefused (the message never quotes the URL).

    https only unless `allow_http`; a host; no user:password part. Where the host may be is
    `check_sink_host` (the shared egress rule)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        raise SinkUrlRefused("the sink URL does not parse as a URL") from None
    schemes: Sequence[str] = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise SinkUrlRefused(
            f"the sink URL must start with {' or '.join(s + '://' for s in schemes)}"
            + ("" if allow_http else " (the Helm value notify.allowHTTP allows http://)")
        )
    if not parts.hostname:
        raise SinkUrlRefused("the sink URL has no host")
    if parts.username is not None or parts.password is not None:
        raise SinkUrlRefused(
            "the sink URL must not carry user:password@ (put the credential in the path or query)"
        )
    return url.strip()


def check_sink_host(host: str, allowed_cidrs: Sequence[str], resolve: Resolver) -> list[str]:
    """The addresses the sink's host resolves to, all allowed by the operator's egress rule (the one S3
    endpoints follow: no loopback, link-local/metadata or cluster-internal address unless a listed CIDR
    holds it); else SinkUrlRefused naming the address class and the Helm value, never the URL."""
    host = host.lower().rstrip(".")
    try:
        return check_addresses(host, allowed_cidrs, resolve)
    except EgressRefused as e:
        reason = str(e) if _is_address(host) else str(e).replace(host, "the sink's host")
        raise SinkUrlRefused(
            f"{reason}; refused unless the Helm value notify.allowedCIDRs lists it"
        ) from None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def event_from_manifest(
    manifest: Mapping[str, Any], location: str, *, action: str | None = None
) -> CaptureLanded:  # fmt: skip
    """The notification of a stored capture, from its manifest (what `capture()` returns) and location."""
    breaches = manifest.get("breaches") or [{}]
    files = [f for f in manifest.get("files") or [] if isinstance(f, Mapping)]
    has_report = any(f.get("name") == "report.html" for f in files)
    return CaptureLanded(
        namespace=str(manifest.get("namespace", "")),
        memorywatch=str(manifest.get("memorywatch", "")),
        pod=str(manifest.get("pod", "")),
        rule=str(manifest.get("rule", "")),
        kind=str(breaches[0].get("kind", "")) if isinstance(breaches[0], Mapping) else "",
        time=str(manifest.get("time", "")),
        summary=str(manifest.get("summary", "")),
        location=location,
        report=f"{location.rstrip('/')}/report.html" if has_report else None,
        files=len(files) + 1,  # and the manifest
        errors=tuple(str(e) for e in manifest.get("errors") or []),
        action=action,
    )
