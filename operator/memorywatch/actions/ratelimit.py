"""A sliding-window limit on actions, cluster-wide and per namespace: the pure decision.

The record of recent actions is a list of (unix time, namespace) kept in one Lease in the operator's namespace
(actions/ledger.py reads and writes it with optimistic concurrency), so every operator replica counts the same
actions. Pure: the caller passes the time (an injectable clock) and the records.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

#: Records are kept in a Lease annotation; it never holds more than this many, whatever the limits say.
MAX_RECORDS = 1000


@dataclasses.dataclass(frozen=True)
class RateLimits:
    """At most `cluster_max` actions in any `window_seconds` across the cluster, and `namespace_max` per
    namespace (chart values actions.rateLimit.*). 0 for a max means no action at all."""

    window_seconds: float = 600.0
    cluster_max: int = 10
    namespace_max: int = 3

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError(f"actions.rateLimit.window must be positive, got {self.window_seconds}s")
        if not 0 <= self.cluster_max <= MAX_RECORDS:
            raise ValueError(f"actions.rateLimit.cluster must be 0..{MAX_RECORDS}, got {self.cluster_max}")
        if self.namespace_max < 0:
            raise ValueError(f"actions.rateLimit.perNamespace must be >= 0, got {self.namespace_max}")


@dataclasses.dataclass(frozen=True)
class Record:
    time: float
    namespace: str


@dataclasses.dataclass(frozen=True)
class Admission:
    allowed: bool
    reason: str
    message: str
    #: The records to store: expired ones dropped and, when allowed, this action added.
    records: tuple[Record, ...]
    #: When the oldest counted record leaves the window (when a refused action could next be allowed).
    retry_at: float | None = None


def admit(records: Sequence[Record], namespace: str, now: float, limits: RateLimits) -> Admission:
    """Whether one more action in `namespace` at `now` fits both windows."""
    start = now - limits.window_seconds
    live = sorted((r for r in records if start < r.time <= now + limits.window_seconds), key=lambda r: r.time)
    live = live[-MAX_RECORDS:]
    window = f"{limits.window_seconds:g}s"
    in_ns = [r for r in live if r.namespace == namespace]
    if len(live) >= limits.cluster_max:
        retry = live[-limits.cluster_max].time + limits.window_seconds if limits.cluster_max else None
        return Admission(
            False,
            "ClusterRateLimited",
            f"{len(live)} action(s) in the cluster in the last {window} reach actions.rateLimit.cluster="
            f"{limits.cluster_max}; the next is allowed when the oldest leaves the window",
            tuple(live),
            retry,
        )
    if len(in_ns) >= limits.namespace_max:
        retry = in_ns[-limits.namespace_max].time + limits.window_seconds if limits.namespace_max else None
        return Admission(
            False,
            "NamespaceRateLimited",
            f"{len(in_ns)} action(s) in namespace {namespace} in the last {window} reach "
            f"actions.rateLimit.perNamespace={limits.namespace_max}",
            tuple(live),
            retry,
        )
    return Admission(True, "Allowed", "within the rate limits", (*live, Record(now, namespace)))


def encode(records: Sequence[Record]) -> str:
    return json.dumps(
        [[round(r.time, 3), r.namespace] for r in records[-MAX_RECORDS:]], separators=(",", ":")
    )


def decode(text: str | None) -> list[Record]:
    """Read the stored records; anything malformed is dropped (the Lease is ours, but never trusted to parse)."""
    if not text:
        return []
    try:
        raw = json.loads(text)
    except ValueError:
        return []
    out: list[Record] = []
    if not isinstance(raw, list):
        return out
    for item in raw[-MAX_RECORDS:]:
        if (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], int | float)
            and isinstance(item[1], str)
            and len(item[1]) <= 253
        ):
            out.append(Record(float(item[0]), item[1]))
    return out
