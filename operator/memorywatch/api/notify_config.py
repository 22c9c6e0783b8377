"""`spec.notify` of a MemoryWatch, read into frozen values: where notifications go, which events, how often.

The CRD enforces the same shape, bounds and floor (crds/, docs/operator.md#notify); this module applies the
defaults again and reports each problem naming the field and the fix. Pure: no I/O. A sink names a Secret key
in the watch's own namespace, never a URL: a URL written into the spec is refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from memorywatch.api.units import UnitError, parse_duration

SINK_TYPES = ("Webhook", "Slack")
EVENT_TYPES = ("Breach", "Capture", "Action", "Failure")
DEFAULT_EVENTS = ("Capture", "Action", "Failure")
MAX_SINKS = 5
#: The rate limit's floor and bounds (the CRD enforces the same).
MIN_RATE_INTERVAL_SECONDS = 10.0
MAX_RATE_INTERVAL_SECONDS = 24 * 3600.0
MAX_RATE_BURST = 20
DEFAULT_RATE_INTERVAL_SECONDS = 60.0
DEFAULT_RATE_BURST = 5
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclasses.dataclass(frozen=True)
class NotifySinkSpec:
    name: str
    type: str  # Webhook | Slack
    secret_name: str
    secret_key: str = "url"


@dataclasses.dataclass(frozen=True)
class NotifySpec:
    sinks: tuple[NotifySinkSpec, ...]
    events: frozenset[str] = frozenset(DEFAULT_EVENTS)
    rate_interval_seconds: float = DEFAULT_RATE_INTERVAL_SECONDS
    rate_burst: int = DEFAULT_RATE_BURST

    def wants(self, event: str) -> bool:
        return event in self.events


def parse_notify(raw: Any, problems: list[str]) -> NotifySpec | None:
    """`spec.notify` (None when absent), appending one line per problem to `problems`."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append("spec.notify must be an object with sinks, events and rateLimit")
        return None
    sinks: list[NotifySinkSpec] = []
    raw_sinks = raw.get("sinks")
    if not isinstance(raw_sinks, list) or not raw_sinks:
        problems.append("spec.notify.sinks must list at least one sink (or remove spec.notify)")
        raw_sinks = []
    if len(raw_sinks) > MAX_SINKS:
        problems.append(f"spec.notify.sinks has {len(raw_sinks)} entries; at most {MAX_SINKS} are allowed")
    for i, s in enumerate(raw_sinks[:MAX_SINKS]):
        sink = _sink(f"spec.notify.sinks[{i}]", s, problems)
        if sink is not None:
            if any(x.name == sink.name for x in sinks):
                problems.append(
                    f"spec.notify.sinks[{i}].name {sink.name!r} is used twice; names must be unique"
                )
            sinks.append(sink)
    events = raw.get("events")
    if events is None:
        chosen = frozenset(DEFAULT_EVENTS)
    elif not isinstance(events, list) or not events:
        problems.append(f"spec.notify.events must list at least one of {', '.join(EVENT_TYPES)}")
        chosen = frozenset(DEFAULT_EVENTS)
    else:
        bad = [str(e) for e in events if e not in EVENT_TYPES]
        if bad:
            problems.append(f"spec.notify.events: {', '.join(bad)} unknown; use {', '.join(EVENT_TYPES)}")
        chosen = frozenset(str(e) for e in events if e in EVENT_TYPES)
    rate_raw = raw.get("rateLimit")
    rate: Mapping[str, Any] = rate_raw if isinstance(rate_raw, Mapping) else {}
    interval = DEFAULT_RATE_INTERVAL_SECONDS
    if rate.get("interval") is not None:
        try:
            interval = parse_duration(rate["interval"])
        except UnitError as e:
            problems.append(f"spec.notify.rateLimit.interval: {e}")
        if not MIN_RATE_INTERVAL_SECONDS <= interval <= MAX_RATE_INTERVAL_SECONDS:
            problems.append(
                f"spec.notify.rateLimit.interval must be between 10s and 24h (got {rate['interval']}): the "
                "floor keeps a watch from flooding its channel"
            )
            interval = DEFAULT_RATE_INTERVAL_SECONDS
    burst = rate.get("burst", DEFAULT_RATE_BURST)
    if not isinstance(burst, int) or isinstance(burst, bool) or not 1 <= burst <= MAX_RATE_BURST:
        problems.append(f"spec.notify.rateLimit.burst must be an integer from 1 to {MAX_RATE_BURST}")
        burst = DEFAULT_RATE_BURST
    return NotifySpec(tuple(sinks), chosen, interval, burst)


def _sink(path: str, raw: Any, problems: list[str]) -> NotifySinkSpec | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{path} must be an object with name, type and urlSecretRef")
        return None
    if "url" in raw:
        problems.append(
            f"{path}.url is not allowed: a sink URL is a credential; put it in a Secret in this namespace "
            "and name it in urlSecretRef"
        )
    name = str(raw.get("name") or "")
    if not _DNS_LABEL.match(name) or len(name) > 63:
        problems.append(f"{path}.name must be a DNS label (lowercase letters, digits, '-'), e.g. team-slack")
    type_ = str(raw.get("type") or "")
    if type_ not in SINK_TYPES:
        problems.append(f"{path}.type must be Webhook or Slack (got {type_!r})")
    ref = raw.get("urlSecretRef")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        problems.append(f"{path}.urlSecretRef.name is required: a Secret in this namespace holding the URL")
        return None
    secret, key = str(ref["name"]), str(ref.get("key") or "url")
    if not _SECRET_NAME.match(secret) or len(secret) > 253:
        problems.append(f"{path}.urlSecretRef.name {secret!r} is not a Secret name")
    if not _SECRET_KEY.match(key) or len(key) > 253:
        problems.append(f"{path}.urlSecretRef.key {key!r} is not a Secret key")
    return NotifySinkSpec(name, type_, secret, key)
