"""A sliding-window limit on actions, cluster-wide and per namespace, and one disruptive action per workload at a
time: the pure decision.

The record of recent actions is a list of (unix time, namespace, workload) kept in one Lease in the operator's
namespace (actions/ledger.py reads and writes it with optimistic concurrency), so every operator replica counts
the same actions. The workload entry serialises disruptive decisions on one workload across replicas: two
replicas that passed the replica guards at the same moment both try to record theirs, one write wins, and the
other reads the Lease again and finds the workload taken (WorkloadBusy), so it does not act on facts read before
the first action. Pure: the caller passes the time (an injectable clock) and the records.
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
    #: After a disruptive action on a workload, no other for this long (capped at the window), so the next
    #: decision reads facts that include the first one's effect. 30 s is far above the few API calls between
    #: reading the facts and acting; the per-watch action cooldown (at least 1m) spaces one watch's own actions.
    workload_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError(f"actions.rateLimit.window must be positive, got {self.window_seconds}s")
        if not 0 <= self.cluster_max <= MAX_RECORDS:
            raise ValueError(f"actions.rateLimit.cluster must be 0..{MAX_RECORDS}, got {self.cluster_max}")
        if self.namespace_max < 0:
            raise ValueError(f"actions.rateLimit.perNamespace must be >= 0, got {self.namespace_max}")
        if self.workload_seconds < 0:
            raise ValueError(f"the per-workload spacing must be >= 0, got {self.workload_seconds}s")


@dataclasses.dataclass(frozen=True)
class Record:
    time: float
    namespace: str
    #: The workload a disruptive action took a pod from (e.g. "Deployment/web"); "" for other actions.
    workload: str = ""


@dataclasses.dataclass(frozen=True)
class Admission:
    allowed: bool
    reason: str
    message: str
    #: The records to store: expired ones dropped and, when allowed, this action added.
    records: tuple[Record, ...]
    #: When the oldest counted record leaves the window (when a refused action could next be allowed).
    retry_at: float | None = None


def admit(
    records: Sequence[Record], namespace: str, now: float, limits: RateLimits, workload: str = ""
) -> Admission:
    """Whether one more action in `namespace` at `now` fits both windows and, for a disruptive action on
    `workload`, whether no other took a pod from it in the last `workload_seconds`."""
    start = now - limits.window_seconds
    live = sorted((r for r in records if start < r.time <= now + limits.window_seconds), key=lambda r: r.time)
    live = live[-MAX_RECORDS:]
    window = f"{limits.window_seconds:g}s"
    in_ns = [r for r in live if r.namespace == namespace]
    spacing = min(limits.workload_seconds, limits.window_seconds)
    same = [r for r in live if workload and r.workload == workload and r.namespace == namespace]
    if same and now - same[-1].time < spacing:
        return Admission(
            False,
            "WorkloadBusy",
            f"another action took a pod from {workload} {max(0.0, now - same[-1].time):.0f}s ago (this or "
            f"another operator replica); one disruptive action per workload per {spacing:g}s, so the replica "
            "guards see its effect first",
            tuple(live),
            same[-1].time + spacing,
        )
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
    return Admission(True, "Allowed", "within the rate limits", (*live, Record(now, namespace, workload)))


def encode(records: Sequence[Record]) -> str:
    rows = [
        [round(r.time, 3), r.namespace, r.workload] if r.workload else [round(r.time, 3), r.namespace]
        for r in records[-MAX_RECORDS:]
    ]
    return json.dumps(rows, separators=(",", ":"))


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
            and len(item) in (2, 3)
            and isinstance(item[0], int | float)
            and all(isinstance(x, str) and len(x) <= 320 for x in item[1:])
            and len(item[1]) <= 253
        ):
            out.append(Record(float(item[0]), item[1], item[2] if len(item) == 3 else ""))
    return out
