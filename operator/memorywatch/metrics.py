"""The operator's Prometheus metrics: bounded label sets only (no pod names; per-watch series are described below)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, Info

from memorywatch import __version__
from memorywatch.rules.model import RuleKind

SCRAPES = Counter("memorywatch_scrapes", "Scrapes of target pods, by result (ok, error).", ["result"])
SCRAPE_SECONDS = Histogram(
    "memorywatch_scrape_duration_seconds",
    "How long one scrape of a target took (index page, heap?debug=1 and /metrics together).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BREACHES = Counter("memorywatch_breaches", "Rule breaches, by rule kind.", ["kind"])
CAPTURES = Counter("memorywatch_captures", "Captures, by result (ok, partial, error).", ["result"])
ACTIONS = Counter(
    "memorywatch_actions", "Actions, by action and result (done, dry-run, skipped).", ["action", "result"]
)
WATCHES = Gauge("memorywatch_watches", "MemoryWatch objects being reconciled by this operator.")
TARGETS = Gauge("memorywatch_targets", "Pods being watched across all MemoryWatch objects.")
EVENT_LOOP_LAG_SECONDS = Histogram(
    "memorywatch_event_loop_lag_seconds",
    "How late the event loop ran a timer that was due (sampled every 0.25 s): work that blocks the loop.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASK_FAULTS = Counter(
    "memorywatch_task_faults",
    "Unexpected failures of supervised tasks, by task (loop, capture, rule, status, events, reconcile, ...).",
    ["task"],
)
EVENTS_DROPPED = Counter(
    "memorywatch_engine_events_dropped",
    "Engine events dropped because the controller's queue was full, by kind (samples first).",
    ["kind"],
)
SECRET_READS = Counter(
    "memorywatch_secret_reads", "Secret reads from the API server, by result (ok, error).", ["result"]
)
SHARD_MEMBERS = Gauge(
    "memorywatch_shard_members",
    "Live operator replicas in this replica's sharding view (0 when sharding is off).",
)
SHARD_VIEW_UPDATED = Gauge(
    "memorywatch_shard_view_updated_timestamp_seconds",
    "When this replica last renewed its member Lease and read the others' (sharding).",
)
SHARD_MEMBERSHIP_ERRORS = Counter(
    "memorywatch_shard_membership_errors",
    "Failed renewals or reads of the sharding member Leases (the replica keeps its last view).",
)
BUILD = Info("memorywatch_build", "The operator's version.")
BUILD.info({"version": __version__})

# Per-watch state, for alerts and the dashboard (charts/memorywatch/templates/prometheusrule.yaml, the
# dashboard ConfigMap). Labels are the MemoryWatch's namespace (`watch_namespace`: Prometheus already gives
# every series the operator pod's own `namespace`) and name, and a rule kind or result: one
# series per MemoryWatch object the operator already holds in memory, removed by `forget_watch` when the
# watch goes. Never a pod name, a rule name or anything else a tenant can multiply.
WATCH_TARGETS = Gauge(
    "memorywatch_watch_targets", "Pods a MemoryWatch selects and watches.", ["watch_namespace", "memorywatch"]
)
WATCH_TARGETS_FAILING = Gauge(
    "memorywatch_watch_targets_failing",
    "Pods of a MemoryWatch whose latest scrape failed (unreachable, refused, not pprof, over a budget).",
    ["watch_namespace", "memorywatch"],
)
WATCH_BREACHES = Counter(
    "memorywatch_watch_breaches",
    "Rule breaches of a MemoryWatch, by rule kind.",
    ["watch_namespace", "memorywatch", "kind"],
)
WATCH_CAPTURES = Counter(
    "memorywatch_watch_captures",
    "Captures of a MemoryWatch, by result (ok, partial, error).",
    ["watch_namespace", "memorywatch", "result"],
)
WATCH_STORE_AVAILABLE = Gauge(
    "memorywatch_watch_store_available",
    "1 when the capture store of a MemoryWatch took its latest write (or check), 0 when it failed; with S3 "
    "and the PVC fallback, 0 means the PVC failed too.",
    ["watch_namespace", "memorywatch"],
)
WATCH_STORE_DEGRADED = Gauge(
    "memorywatch_watch_store_degraded",
    "1 when a MemoryWatch's S3 store failed and its captures go to the PVC fallback, else 0.",
    ["watch_namespace", "memorywatch"],
)
STORE_CAPACITY_BYTES = Gauge(
    "memorywatch_store_capacity_bytes", "Size of the operator's local capture volume (the PVC), from statvfs."
)
STORE_FREE_BYTES = Gauge(
    "memorywatch_store_free_bytes",
    "Free bytes on the operator's local capture volume (the PVC), from statvfs.",
)
NOTIFICATIONS = Counter(
    "memorywatch_notifications",
    "Notifications to sinks, by sink kind (webhook, slack) and result (sent, failed, dropped, rate-limited).",
    ["sink", "result"],
)

_PER_WATCH = (WATCH_TARGETS, WATCH_TARGETS_FAILING, WATCH_STORE_AVAILABLE, WATCH_STORE_DEGRADED)
CAPTURE_RESULTS = ("ok", "partial", "error")


def forget_watch(namespace: str, memorywatch: str) -> None:
    """Drop a deleted MemoryWatch's series, so the per-watch metrics never outlive their objects."""
    for gauge in _PER_WATCH:
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, memorywatch)
    for kind in RuleKind:
        with contextlib.suppress(KeyError):
            WATCH_BREACHES.remove(namespace, memorywatch, str(kind))
    for result in CAPTURE_RESULTS:
        with contextlib.suppress(KeyError):
            WATCH_CAPTURES.remove(namespace, memorywatch, result)


def register_watch(namespace: str, memorywatch: str) -> None:
    """Create a MemoryWatch's series at zero when it starts, so `increase()` sees its first breach/capture.

    (A counter series born at 1 has no earlier sample, and PromQL's increase() over it is empty.)"""
    for kind in RuleKind:
        WATCH_BREACHES.labels(namespace, memorywatch, str(kind))
    for result in CAPTURE_RESULTS:
        WATCH_CAPTURES.labels(namespace, memorywatch, result)
    WATCH_TARGETS.labels(namespace, memorywatch)
    WATCH_TARGETS_FAILING.labels(namespace, memorywatch)
    WATCH_STORE_DEGRADED.labels(namespace, memorywatch)
