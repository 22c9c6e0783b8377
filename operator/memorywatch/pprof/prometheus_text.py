"""Prometheus text exposition from a Go process (`/metrics`): the few series the leak rules use."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from memorywatch.pprof.errors import MalformedMetrics

# Attribute -> metric name as client_golang exposes it. Counters are matched with and without `_total`:
# the parser strips the suffix from family names but keeps it on sample names, and an exporter may declare
# the family either way (or not at all).
METRICS: Mapping[str, str] = {
    "rss_bytes": "process_resident_memory_bytes",
    "goroutines": "go_goroutines",
    "threads": "go_threads",
    "finalizers_queued": "go_gc_finalizers_queued_finalizers_total",
    "finalizers_executed": "go_gc_finalizers_executed_finalizers_total",
    "cleanups_queued": "go_gc_cleanups_queued_cleanups_total",
    "cleanups_executed": "go_gc_cleanups_executed_cleanups_total",
    "heap_live_bytes": "go_gc_heap_live_bytes",
    "heap_objects": "go_gc_heap_objects_objects",
    "sys_bytes": "go_memstats_sys_bytes",
    "heap_released_bytes": "go_memstats_heap_released_bytes",
    "process_start_seconds": "process_start_time_seconds",
}
_LOOKUP: Mapping[str, str] = {
    **{name: attr for attr, name in METRICS.items()},
    **{name.removesuffix("_total"): attr for attr, name in METRICS.items() if name.endswith("_total")},
}


@dataclasses.dataclass(frozen=True)
class PromSnapshot:
    """The series present in one scrape; a field is None when the process does not export that metric.

    Finalizer and cleanup counters are cumulative (Go ≥1.26 only); their difference is the queue length.
    """

    rss_bytes: int | None = None
    goroutines: int | None = None
    threads: int | None = None
    finalizers_queued: int | None = None
    finalizers_executed: int | None = None
    cleanups_queued: int | None = None
    cleanups_executed: int | None = None
    heap_live_bytes: int | None = None
    heap_objects: int | None = None
    sys_bytes: int | None = None
    heap_released_bytes: int | None = None
    process_start_seconds: int | None = None  # unix time the process started (client_golang, Linux)


_PREFIXES = tuple(prefix + name for name in _LOOKUP for prefix in ("", "# TYPE ", "# HELP "))
# When no line names a series we use, this much of the body is parsed anyway, so that a body that is not
# Prometheus text at all is still called malformed (and /metrics marked absent), at a bounded cost.
_CHECK_CHARS = 65536


def relevant_lines(text: str) -> str:
    """Only the lines about the series we use: an application's /metrics can be megabytes of its own
    series, and the Prometheus parser costs ~0.6 s per MiB; filtering by prefix costs a few ms."""
    kept = [line for line in text.splitlines() if line.lstrip().startswith(_PREFIXES)]
    if not kept:
        return text[:_CHECK_CHARS].rsplit("\n", 1)[0] if len(text) > _CHECK_CHARS else text
    return "\n".join(kept) + "\n"


def parse_prometheus_text(text: str) -> PromSnapshot:
    """Parse a /metrics body; unknown metrics are ignored. Raises MalformedMetrics on text that does not parse."""
    if not text.strip():
        raise MalformedMetrics(text, "the body is empty")
    values: dict[str, int] = {}
    try:
        for family in text_string_to_metric_families(relevant_lines(text)):
            for sample in family.samples:
                attr = _LOOKUP.get(sample.name)
                # Go's collectors export these without labels; the first unlabelled sample wins.
                if attr is None or attr in values or sample.labels:
                    continue
                if (
                    isinstance(sample.value, int | float)
                    and math.isfinite(sample.value)
                    and sample.value >= 0
                ):
                    values[attr] = int(sample.value)
    except (ValueError, IndexError, KeyError, TypeError) as e:
        # prometheus_client raises ValueError for most malformed lines; the others come from odd escapes.
        raise MalformedMetrics(text, str(e)[:80]) from None
    return PromSnapshot(**values)
