"""The operator's Prometheus metrics: bounded label sets only (no pod or MemoryWatch names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from memorywatch import __version__

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
BUILD = Info("memorywatch_build", "The operator's version.")
BUILD.info({"version": __version__})
