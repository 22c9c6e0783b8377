"""Retention and quotas for the shared capture volume: the pure decision of what to prune and whether a new
capture may start.

Limits: a maximum age and byte quotas in total and per namespace (chart values `store.retention.*`), and per
watch a lower maximum age and a byte cap (`capture.retention`, never above the chart's). Pruning goes oldest
first and never removes a watch's newest capture, so every watch keeps its latest evidence. When the limits
still do not hold after pruning, the new capture is refused with the quota named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping


@dataclasses.dataclass(frozen=True)
class Limits:
    """None: no limit."""

    max_age_seconds: float | None = None
    total_bytes: int | None = None
    namespace_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class WatchLimits:
    """A watch's own, lower limits (`capture.retention`)."""

    max_age_seconds: float | None = None
    max_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class Stored:
    path: str  # <namespace>/<memorywatch>/<pod>/<time>-<rule>
    namespace: str
    watch: str  # <namespace>/<memorywatch>
    time: float
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class Plan:
    prune: tuple[str, ...]
    admitted: bool
    reason: str  # Admitted | TotalQuota | NamespaceQuota | WatchQuota
    message: str


def _smaller(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def plan(
    stored: Iterable[Stored],
    *,
    limits: Limits,
    now: float,
    namespace: str,
    watch: str,
    watch_limits: Mapping[str, WatchLimits] | None = None,
) -> Plan:
    """What to prune before a new capture of `watch` (in `namespace`) starts, and whether it may."""
    per_watch = dict(watch_limits or {})
    items = sorted(stored, key=lambda s: (s.time, s.path))
    newest: dict[str, str] = {}
    for s in items:
        newest[s.watch] = s.path  # the last one per watch wins: the newest
    keep = set(newest.values())
    pruned: list[str] = []
    live = list(items)

    def drop(candidates: Iterable[Stored], over: Callable[[], bool]) -> None:
        for s in list(candidates):
            if not over():
                return
            if s.path in keep:
                continue
            pruned.append(s.path)
            live.remove(s)

    # 1. Age: the chart's maximum, or the watch's own lower one.
    for s in list(live):
        wl = per_watch.get(s.watch, WatchLimits())
        max_age = _smaller(limits.max_age_seconds, wl.max_age_seconds)
        if max_age is not None and now - s.time > max_age and s.path not in keep:
            pruned.append(s.path)
            live.remove(s)

    def used(pred: Callable[[Stored], bool] = lambda s: True) -> int:
        return sum(s.size_bytes for s in live if pred(s))

    # 2. The watch's own byte cap, 3. the namespace's, 4. the total: oldest first, each watch's newest kept.
    wl = per_watch.get(watch, WatchLimits())
    cap_watch = wl.max_bytes
    if cap_watch is not None:
        drop((s for s in live if s.watch == watch), lambda: used(lambda s: s.watch == watch) >= cap_watch)
    cap_ns = limits.namespace_bytes
    if cap_ns is not None:
        drop(
            (s for s in live if s.namespace == namespace),
            lambda: used(lambda s: s.namespace == namespace) >= cap_ns,
        )
    cap_total = limits.total_bytes
    if cap_total is not None:
        drop(live, lambda: used() >= cap_total)

    checks = (
        ("WatchQuota", cap_watch, used(lambda s: s.watch == watch), f"capture.retention.maxBytes of {watch}"),
        ("NamespaceQuota", cap_ns, used(lambda s: s.namespace == namespace),
         f"store.retention.namespaceBytes for namespace {namespace}"),
        ("TotalQuota", cap_total, used(), "store.retention.totalBytes"),
    )  # fmt: skip
    for reason, cap, usage, name in checks:
        if cap is not None and usage >= cap:
            return Plan(
                tuple(pruned),
                False,
                reason,
                f"the capture volume's quota is reached: {usage} bytes stored against {name}={cap}, and only "
                "each watch's newest capture is left to prune (raise the quota, or lower capture.retention)",
            )
    return Plan(tuple(pruned), True, "Admitted", "within the quotas")
