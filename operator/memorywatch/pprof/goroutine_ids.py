"""Goroutine identity from a `goroutine?debug=2` dump, kept compact: which goroutines (by ID) were alive.

A leaked goroutine keeps its ID for as long as the process lives; goroutines that serve load come and go,
and every new one gets a new ID (runtime goids only increase). Two or three dumps minutes apart tell the two
apart where the count cannot. Only the `goroutine N [state…]:` header lines are read, streamed, and only a
consistent hash-sample of at most MAX_SAMPLED_IDS IDs is kept: an ID is kept when its hash is below the
sample's threshold, so two samples compared at the lower of their thresholds see the same goroutines.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

MAX_SAMPLED_IDS = 512
# Byte budget for one identity dump: a dump cut here is marked incomplete and not used.
MAX_DUMP_BYTES = 16 * 1024 * 1024
HASH_SPACE = 1 << 32
_HEADER = re.compile(rb"goroutine (\d+)(?: gp=\S+ m=\S+(?: mp=\S+)?)? \[")


def id_hash(goid: int) -> int:
    """Fibonacci hashing: spreads consecutive IDs evenly over [0, 2³²)."""
    return (goid * 0x9E3779B1) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class GoroutineIds:
    """A hash-sample of the goroutine IDs alive in one dump. `threshold` is the hash bound of the sample
    (HASH_SPACE keeps every ID); `complete` is False when the dump was cut short (then it is not used)."""

    total: int
    threshold: int
    ids: frozenset[int]
    complete: bool = True

    def at(self, threshold: int) -> frozenset[int]:
        """The sampled IDs at a lower (or equal) threshold."""
        if threshold >= self.threshold:
            return self.ids
        return frozenset(i for i in self.ids if id_hash(i) < threshold)


def sample_ids(ids: Iterable[int], *, complete: bool = True, limit: int = MAX_SAMPLED_IDS) -> GoroutineIds:
    """Keep a consistent sample of at most about `limit` of `ids`."""
    unique = set(ids)
    total = len(unique)
    threshold = HASH_SPACE if total <= limit else HASH_SPACE * limit // total
    kept = frozenset(i for i in unique if id_hash(i) < threshold)
    return GoroutineIds(total=total, threshold=threshold, ids=kept, complete=complete)


class GoroutineIdsParser:
    """Feed the dump's lines (bytes) one at a time; only headers are looked at, so memory stays at one int
    per goroutine until `result()` samples them down."""

    def __init__(self) -> None:
        self._ids: list[int] = []

    def feed(self, line: bytes) -> None:
        if line.startswith(b"goroutine "):
            match = _HEADER.match(line)
            if match is not None:
                self._ids.append(int(match.group(1)))

    def result(self, *, complete: bool = True) -> GoroutineIds:
        return sample_ids(self._ids, complete=complete)


def parse_goroutine_ids(text: bytes, *, complete: bool = True) -> GoroutineIds:
    parser = GoroutineIdsParser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.result(complete=complete)


@dataclasses.dataclass(frozen=True)
class Persistence:
    """Of the goroutines that appeared between an older and a middle dump, how many were still there (same
    IDs) in the newest one, scaled up from the sample; `grown` is the count growth older → middle."""

    appeared: float
    persisted: float
    grown: int

    @property
    def share_of_growth(self) -> float:
        return self.persisted / self.grown if self.grown > 0 else 0.0


def persistence(older: GoroutineIds, middle: GoroutineIds, newest: GoroutineIds) -> Persistence:
    threshold = min(older.threshold, middle.threshold, newest.threshold)
    scale = HASH_SPACE / threshold if threshold > 0 else 0.0
    appeared = middle.at(threshold) - older.at(threshold)
    persisted = appeared & newest.at(threshold)
    return Persistence(len(appeared) * scale, len(persisted) * scale, middle.total - older.total)
