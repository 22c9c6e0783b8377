"""One observation of one target: what the rules judge. Pure values, no I/O."""

from __future__ import annotations

import dataclasses

from memorywatch.pprof.goroutine_ids import GoroutineIds
from memorywatch.pprof.goroutines import GoroutineProfile
from memorywatch.pprof.memstats import MemStats


@dataclasses.dataclass(frozen=True)
class Sample:
    """What one scrape of one target saw.

    `time` is seconds since the Unix epoch when the scrape finished. `heap_live_bytes` is the live heap as
    of the last completed GC (the heap profile's in-use total, scaled; or the runtime's own metric when the
    target exports it), never a mid-cycle HeapAlloc; `heap_live_objects` likewise counts objects. `rss_bytes` is resident memory from the best source the
    target offers, named in `rss_source` (`prometheus`, `metrics-api`, `proc`, or `maxrss`, a lower bound).
    `goroutine_profile` is present only when a rule asked for stacks on this scrape.
    `heap_sites` are the heap profile's largest allocation sites as (site key, in-use bytes, allocated
    bytes), at most 32, unsampled (None without a heap profile). `goroutine_ids` (a hash-sample of at most 512 goroutine IDs from a debug=2 dump) is present only when a
    rule asked for Probe.GOROUTINE_DUMP. `heap_profile_rate` is the target's runtime.MemProfileRate as its heap profile states it (`@ heap/2N`);
    0 means heap profiling is off, so the profile is empty and `heap_live_*` are None unless the target
    exports the runtime's own live-heap metric. `process_start_seconds` is the unix time the process started,
    from /metrics (`process_start_time_seconds`) when the target exports it: the one restart signal that does
    not depend on counters going down. `process_started_at` is the best-known unix time the process started,
    from /metrics or, for a process on this machine, from /proc (None: unknown); the rules hold back rises of
    a young process as a possible warm-up (rules/base.py, YOUNG_HOLD_SHARE).
    """

    target: str
    time: float
    goroutines: int | None = None
    memstats: MemStats | None = None
    heap_live_bytes: int | None = None
    heap_live_objects: int | None = None
    rss_bytes: int | None = None
    rss_source: str | None = None
    finalizers_queued: int | None = None
    finalizers_executed: int | None = None
    threads: int | None = None
    limit_bytes: int | None = None
    heap_profile_rate: int | None = None
    process_start_seconds: int | None = None
    process_started_at: float | None = None
    goroutine_ids: GoroutineIds | None = None
    heap_sites: tuple[tuple[int, int, int], ...] | None = None
    goroutine_profile: GoroutineProfile | None = None
