"""The recent samples a capture carries (its manifest's `memstatsSeries`), kept as columns.

A capture's manifest reads 14 numbers and the RSS source of each of a target's last RECENT_SAMPLES samples
(engine/capture.py `_series`), plus the last goroutine count. Keeping whole Sample objects for that held
every sample's heap sites, MemStats and boxed ints alive: ~6 KiB a sample, 1.4 MiB a target with a full
window on a simulated Go service. Here each field is one integer array as narrow as its values allow: int16,
widened to int32 and then int64 the first time a value does not fit (the column is copied once; values are
kept exactly, so a capture writes the same numbers). Counts (goroutines, GCs) usually stay int16 or int32,
and byte figures below 2 GiB int32: 2–4 bytes a sample instead of 8. None is each width's lowest value (a
sentinel); a value that is not an int64, which only a hostile target reports, is kept as it came in a side
table. The time is an `array('d')` (kept exactly), and the target and RSS source small codes into a table of
the distinct strings: ~15 KiB a target with a full window (~29 KiB as int64 columns). `samples()` rebuilds
Samples carrying exactly those fields for a capture.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Iterable
from typing import Any

from memorywatch.pprof.memstats import MemStats
from memorywatch.samples import Sample

# The widths a column goes through, narrowest first. In each, the lowest value is the sentinel for None, so a
# column of typecode t keeps values from -_MAX[t] to _MAX[t] (int64: -(2**63) + 1 to 2**63 - 1).
_WIDTHS = ("h", "i", "q")
_MAX = {code: 2 ** (8 * array.array(code).itemsize - 1) - 1 for code in _WIDTHS}
_NONE = {code: -_MAX[code] - 1 for code in _WIDTHS}
_INT64 = "q"
assert array.array(_INT64).itemsize == 8

Reader = Callable[[Sample], Any]


def _memstats(attr: str) -> Reader:
    def read(sample: Sample) -> Any:
        m = sample.memstats
        return getattr(m, attr) if m is not None else None

    return read


def _field(attr: str) -> Reader:
    def read(sample: Sample) -> Any:
        return getattr(sample, attr)

    return read


SAMPLE_FIELDS = ("goroutines", "heap_live_bytes", "heap_live_objects", "rss_bytes")
MEMSTATS_FIELDS = (
    "heap_alloc",
    "heap_inuse",
    "heap_objects",
    "heap_released",
    "stack_inuse",
    "sys",
    "next_gc",
    "num_gc",
    "max_rss",
)
_READERS: tuple[Reader, ...] = (*(_field(a) for a in SAMPLE_FIELDS), *(_memstats(a) for a in MEMSTATS_FIELDS))
# Distinct target names and RSS sources kept in the code table before it is rebuilt from the live rows.
_MAX_LABELS = 64


class SampleWindow:
    """The last `capacity` samples of one target, as columns; oldest first."""

    __slots__ = ("_capacity", "_codes", "_columns", "_first_seq", "_labels", "_overflow", "_times")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a sample window holds at least one sample")
        self._capacity = capacity
        self.clear()

    def clear(self) -> None:
        self._times = array.array("d")
        self._columns = [array.array(_WIDTHS[0]) for _ in _READERS]
        self._codes = (array.array("B"), array.array("B"))  # target, rss_source
        self._labels: list[str | None] = [None]
        # (column, sequence number) -> a value that is not an int64 (kept as it came)
        self._overflow: dict[tuple[int, int], Any] = {}
        self._first_seq = 0

    def __len__(self) -> int:
        return len(self._times)

    def append(self, sample: Sample) -> None:
        seq = self._first_seq + len(self._times)
        self._times.append(sample.time)
        columns = self._columns
        for index, read in enumerate(_READERS):
            value = read(sample)
            column = columns[index]
            code = column.typecode
            if value is None:
                column.append(_NONE[code])
            elif type(value) is int and -_MAX[code] <= value <= _MAX[code]:
                column.append(value)
            elif type(value) is int and -_MAX[_INT64] <= value <= _MAX[_INT64]:
                column = columns[index] = _widen(column, value)
                column.append(value)
            else:
                column.append(_NONE[code])
                self._overflow[(index, seq)] = value
        self._codes[0].append(self._code(sample.target))
        self._codes[1].append(self._code(sample.rss_source))
        if len(self._times) > self._capacity:
            self._drop_oldest()

    def _code(self, label: str | None) -> int:
        try:
            return self._labels.index(label)
        except ValueError:
            if len(self._labels) >= _MAX_LABELS:
                self._compact_labels()
            self._labels.append(label)
            return len(self._labels) - 1

    def _compact_labels(self) -> None:
        live = sorted({code for codes in self._codes for code in codes})
        mapping = {old: new for new, old in enumerate(live)}
        self._labels = [self._labels[old] for old in live]
        for codes in self._codes:
            codes[:] = array.array("B", (mapping[c] for c in codes))

    def _drop_oldest(self) -> None:
        del self._times[0]
        for column in self._columns:
            del column[0]
        for codes in self._codes:
            del codes[0]
        if self._overflow:
            dropped = self._first_seq
            self._overflow = {k: v for k, v in self._overflow.items() if k[1] != dropped}
        self._first_seq += 1

    def _value(self, index: int, row: int) -> Any:
        column = self._columns[index]
        value = column[row]
        if value != _NONE[column.typecode]:
            return value
        return self._overflow.get((index, self._first_seq + row))

    def last_goroutines(self) -> int | None:
        value = self._value(0, len(self._times) - 1) if self._times else None
        return value if isinstance(value, int) else None

    def samples(self) -> list[Sample]:
        """The window as Samples carrying the fields a capture's manifest reads (oldest first)."""
        return [self._sample(row) for row in range(len(self._times))]

    def _sample(self, row: int) -> Sample:
        values = [self._value(index, row) for index in range(len(_READERS))]
        fields = dict(zip(SAMPLE_FIELDS, values, strict=False))
        stats = dict(zip(MEMSTATS_FIELDS, values[len(SAMPLE_FIELDS) :], strict=True))
        memstats = MemStats(**stats) if any(v is not None for v in stats.values()) else None
        return Sample(
            target=self._labels[self._codes[0][row]] or "",
            time=self._times[row],
            memstats=memstats,
            rss_source=self._labels[self._codes[1][row]],
            **fields,
        )

    def extend(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.append(sample)


def _widen(column: array.array[int], value: int) -> array.array[int]:
    """A copy of `column` in the narrowest width that also holds `value` (an int64), sentinels mapped."""
    code = next(c for c in _WIDTHS if -_MAX[c] <= value <= _MAX[c])
    old_none, new_none = _NONE[column.typecode], _NONE[code]
    return array.array(code, (new_none if v == old_none else v for v in column))
