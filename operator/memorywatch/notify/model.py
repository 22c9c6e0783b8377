"""What a notification says and where it may go: pure values and functions, no I/O.

A sink is one entry of a MemoryWatch's proposed `spec.notify` (docs/review.md#notifications): a kind
(`Webhook` with MemoryWatch's own JSON body, or `Slack` for Slack incoming webhooks and compatible
receivers such as Mattermost) and a reference to the Secret key holding its URL, in the watch's namespace.
The URL is a secret (Slack's embeds the credential): it is never logged, put in status, events or metrics.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

SCHEMA = "memorywatch.io/capture-notification/v1"
MAX_TEXT_CHARS = 1000


class NotifyError(Exception):
    """Root of this package's errors."""


class SinkUrlRefused(NotifyError):
    """A sink URL that MemoryWatch will not post to; the message names the rule, never the URL."""


class SinkKind(enum.StrEnum):
    WEBHOOK = "Webhook"
    SLACK = "Slack"


@dataclasses.dataclass(frozen=True)
class SinkSpec:
    """One sink of a watch: `name` for logs and metrics, the Secret (in the watch's namespace) and its key."""

    name: str
    kind: SinkKind
    secret_name: str
    secret_key: str = "url"


@dataclasses.dataclass(frozen=True)
class CaptureLanded:
    """A capture that was stored: what the notification says."""

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


def _cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def webhook_body(event: CaptureLanded) -> dict[str, Any]:
    """The generic webhook's JSON body (documented in docs/review.md; `schema` names its version)."""
    return {
        "schema": SCHEMA,
        "event": "CaptureLanded",
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
    title = f":rotating_light: MemoryWatch {_slack_escape(where)}: {_slack_escape(event.kind)} leak in pod {_slack_escape(event.pod)}"
    lines = [
        f"*{_slack_escape(event.rule)}* fired at {_slack_escape(event.time)}",
        _slack_escape(_cut(event.summary)),
        f"Capture: `{_slack_escape(event.location)}` ({event.files} files)",
    ]
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
                "text": {"type": "plain_text", "text": _cut(f"MemoryWatch {where}: {event.kind} leak", 150)},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), 3000)}},
        ],
    }


def body_for(kind: SinkKind, event: CaptureLanded) -> dict[str, Any]:
    return slack_body(event) if kind is SinkKind.SLACK else webhook_body(event)


def backoff_delays(
    attempts: int, *, first_seconds: float, cap_seconds: float, jitter: Callable[[], float]
) -> list[float]:
    """Waits between `attempts` tries: doubling from `first_seconds`, capped, each scaled by jitter() in [0.5, 1]."""
    delays = []
    for n in range(max(attempts - 1, 0)):
        delays.append(min(cap_seconds, first_seconds * 2**n) * (0.5 + 0.5 * min(max(jitter(), 0.0), 1.0)))
    return delays


_ALWAYS_REFUSED = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local: cloud metadata endpoints live here
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("0.0.0.0/8"),
)


def check_sink_url(url: str, *, allow_http: bool = False, allow_loopback: bool = False) -> str:
    """The URL if MemoryWatch may post to it, else SinkUrlRefused (the message never quotes the URL).

    https only unless `allow_http`; no user:password part; never a link-local address (cloud metadata), and
    not loopback unless `allow_loopback`. Host names are not resolved here: NetworkPolicy egress rules are
    the control for names that resolve to internal addresses."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        raise SinkUrlRefused("the sink URL does not parse as a URL") from None
    schemes: Sequence[str] = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise SinkUrlRefused(f"the sink URL must start with {' or '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise SinkUrlRefused("the sink URL has no host")
    if parts.username is not None or parts.password is not None:
        raise SinkUrlRefused(
            "the sink URL must not carry user:password@ (put the credential in the path or query)"
        )
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname == "localhost" and not allow_loopback:
            raise SinkUrlRefused("the sink URL points at localhost (the operator itself)") from None
        return url.strip()
    if any(address in net for net in _ALWAYS_REFUSED if net.version == address.version):
        raise SinkUrlRefused("the sink URL points at a link-local address (cloud metadata); refused")
    if address.is_loopback and not allow_loopback:
        raise SinkUrlRefused("the sink URL points at a loopback address (the operator itself)")
    return url.strip()


def event_from_manifest(
    manifest: Mapping[str, Any], location: str, *, action: str | None = None
) -> CaptureLanded:
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
