"""The runtime.MemStats block at the tail of `/debug/pprof/heap?debug=1`, parsed into a frozen value."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

# Go field name -> attribute name, in the order runtime/pprof prints them.
GO_FIELDS: Mapping[str, str] = {
    "Alloc": "alloc",
    "TotalAlloc": "total_alloc",
    "Sys": "sys",
    "Lookups": "lookups",
    "Mallocs": "mallocs",
    "Frees": "frees",
    "HeapAlloc": "heap_alloc",
    "HeapSys": "heap_sys",
    "HeapIdle": "heap_idle",
    "HeapInuse": "heap_inuse",
    "HeapReleased": "heap_released",
    "HeapObjects": "heap_objects",
    "StackInuse": "stack_inuse",
    "StackSys": "stack_sys",
    "MSpanInuse": "mspan_inuse",
    "MSpanSys": "mspan_sys",
    "MCacheInuse": "mcache_inuse",
    "MCacheSys": "mcache_sys",
    "BuckHashSys": "buck_hash_sys",
    "GCSys": "gc_sys",
    "OtherSys": "other_sys",
    "NextGC": "next_gc",
    "LastGC": "last_gc",
    "PauseNs": "pause_ns",
    "PauseEnd": "pause_end",
    "NumGC": "num_gc",
    "NumForcedGC": "num_forced_gc",
    "GCCPUFraction": "gc_cpu_fraction",
    "DebugGC": "debug_gc",
    "MaxRSS": "max_rss",
}


@dataclasses.dataclass(frozen=True)
class MemStats:
    """One runtime.MemStats reading. Every field is None when the target did not report it.

    Byte counts are in bytes; `last_gc` is nanoseconds since the Unix epoch; `max_rss` is the peak
    resident set (ru_maxrss scaled to bytes), a monotonic lower bound, never a current value.
    """

    alloc: int | None = None
    total_alloc: int | None = None
    sys: int | None = None
    lookups: int | None = None
    mallocs: int | None = None
    frees: int | None = None
    heap_alloc: int | None = None
    heap_sys: int | None = None
    heap_idle: int | None = None
    heap_inuse: int | None = None
    heap_released: int | None = None
    heap_objects: int | None = None
    stack_inuse: int | None = None
    stack_sys: int | None = None
    mspan_inuse: int | None = None
    mspan_sys: int | None = None
    mcache_inuse: int | None = None
    mcache_sys: int | None = None
    buck_hash_sys: int | None = None
    gc_sys: int | None = None
    other_sys: int | None = None
    next_gc: int | None = None
    last_gc: int | None = None
    pause_ns: tuple[int, ...] | None = None
    pause_end: tuple[int, ...] | None = None
    num_gc: int | None = None
    num_forced_gc: int | None = None
    gc_cpu_fraction: float | None = None
    debug_gc: bool | None = None
    max_rss: int | None = None

    def go_fields(self) -> dict[str, int | float | bool | list[int]]:
        """The reported fields keyed by their Go names (`Sys`, `HeapAlloc`, ...), for expressions and manifests."""
        out: dict[str, int | float | bool | list[int]] = {}
        for go_name, attr in GO_FIELDS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            out[go_name] = list(value) if isinstance(value, tuple) else value
        return out


def parse_memstats_lines(lines: Iterable[str]) -> MemStats:
    """Parse the `# Name = value` lines that follow `# runtime.MemStats` (other lines are ignored)."""
    raise NotImplementedError
