"""The operator's Prometheus metrics: bounded label sets only (no pod or MemoryWatch names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Info

from memorywatch import __version__

SCRAPES = Counter("memorywatch_scrapes", "Scrapes of target pods, by result (ok, error).", ["result"])
BREACHES = Counter("memorywatch_breaches", "Rule breaches, by rule kind.", ["kind"])
CAPTURES = Counter("memorywatch_captures", "Captures, by result (ok, partial, error).", ["result"])
ACTIONS = Counter(
    "memorywatch_actions", "Actions, by action and result (done, dry-run, skipped).", ["action", "result"]
)
WATCHES = Gauge("memorywatch_watches", "MemoryWatch objects being reconciled by this operator.")
TARGETS = Gauge("memorywatch_targets", "Pods being watched across all MemoryWatch objects.")
BUILD = Info("memorywatch_build", "The operator's version.")
BUILD.info({"version": __version__})
