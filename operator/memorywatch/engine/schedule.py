"""When each target's first sample is due: spread over the interval by a stable phase per target.

Every target's loop used to start with a sample at once and then every interval after it, so targets added
together (a new MemoryWatch selecting 1,000 pods, an operator restart) stayed in lockstep: each interval
began with a burst of N samples queued behind the scraper's in-flight limit, and that burst was the event
loop's p99 lag (docs/scaling.md). Now a target's first sample waits for its phase, a stable fraction of the
interval taken from a hash of its key, so N targets sample evenly spread over every interval; the same key
keeps the same phase across restarts of the loop or the operator.

A small watch (`memorywatch watch URL`, a MemoryWatch on a few pods) has no burst to spread, and a user
waits for its first sample: targets added while the watch has at most SMALL_WATCH_TARGETS are sampled at once.
"""

from __future__ import annotations

import hashlib

# Up to this many targets, a new target is sampled at once (no burst worth spreading).
SMALL_WATCH_TARGETS = 8


def phase_seconds(key: str, interval_seconds: float) -> float:
    """A stable offset in [0, interval) for `key`: the same key always gets the same phase, and many keys
    spread evenly over the interval."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return interval_seconds * (int.from_bytes(digest, "big") / 2**64)


def first_sample_delay(key: str, interval_seconds: float, watched_targets: int) -> float:
    """Seconds from a target's loop start to its first sample, given how many targets the watch has."""
    if watched_targets <= SMALL_WATCH_TARGETS or interval_seconds <= 0:
        return 0.0
    return phase_seconds(key, interval_seconds)
