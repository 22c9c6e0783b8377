"""The runtime.MemStats block at the tail of `/debug/pprof/heap?debug=1`, parsed into a frozen value."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from memorywatch.pprof.errors import BudgetExceeded

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


@dataclasses.dataclass(frozen=True, slots=True)
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

    def without_arrays(self) -> MemStats:
        """This reading without PauseNs/PauseEnd (512 numbers, ~20 KiB as Python ints): what a sample keeps,
        so a target's retained window costs the same whatever its arrays held."""
        if self.pause_ns is None and self.pause_end is None:
            return self
        return dataclasses.replace(self, pause_ns=None, pause_end=None)

    def go_fields(self) -> dict[str, int | float | bool | list[int]]:
        """The reported fields keyed by their Go names (`Sys`, `HeapAlloc`, ...), for expressions and manifests."""
        out: dict[str, int | float | bool | list[int]] = {}
        for go_name, attr in GO_FIELDS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            out[go_name] = list(value) if isinstance(value, tuple) else value
        return out


# `Stack = inuse / sys` and friends: runtime/pprof prints these pairs on one line.
_PAIRS: Mapping[str, tuple[str, str]] = {
    "Stack": ("stack_inuse", "stack_sys"),
    "MSpan": ("mspan_inuse", "mspan_sys"),
    "MCache": ("mcache_inuse", "mcache_sys"),
}
_ARRAYS = frozenset({"pause_ns", "pause_end"})
_FLOATS = frozenset({"gc_cpu_fraction"})
_BOOLS = frozenset({"debug_gc"})
# Far more than the 256 entries Go prints, so a hostile line cannot make us build a huge tuple.
MAX_ARRAY_ENTRIES = 4096


def _int(text: str) -> int | None:
    text = text.strip()
    # int() accepts "1_000" and surrounding junk like "+5"; Go never prints those, so only plain digits count.
    if not text.isascii() or not text.isdigit() or len(text) > 24:
        return None
    return int(text)


def _float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _bool(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text.strip())


def _array(text: str) -> tuple[int, ...] | None:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    items = text[1:-1].split(None, MAX_ARRAY_ENTRIES)
    if len(items) > MAX_ARRAY_ENTRIES:
        raise BudgetExceeded("entries in a MemStats array", "max_memstats_array_entries", MAX_ARRAY_ENTRIES)
    # What `_int` accepts, item by item, checked for all items at once (512 calls were ~10 % of a sample):
    # every item plain ASCII digits (the joined text is, iff each item is; bytes.isdigit is ASCII-only and
    # far faster than str.isdigit) and at most 24 of them.
    joined = "".join(items)
    if items and not (joined.isascii() and joined.encode().isdigit() and max(map(len, items)) <= 24):
        return None
    return tuple(map(int, items))


def _convert_text(attr: str, raw: str) -> int | float | bool | tuple[int, ...] | None:
    if attr in _ARRAYS:
        return _array(raw)
    if attr in _FLOATS:
        return _float(raw)
    if attr in _BOOLS:
        return _bool(raw)
    return _int(raw)


def convert_json_field(attr: str, raw: object) -> int | float | bool | tuple[int, ...] | None:
    """Convert one value of expvar's `memstats` object to the type of MemStats.`attr`, or None if it is odd."""
    if attr in _ARRAYS:
        if isinstance(raw, list) and len(raw) > MAX_ARRAY_ENTRIES:
            raise BudgetExceeded(
                "entries in a MemStats array", "max_memstats_array_entries", MAX_ARRAY_ENTRIES, len(raw)
            )
        if isinstance(raw, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw
        ):
            return tuple(raw)
        return None
    if attr in _FLOATS:
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            return float(raw)
        return None
    if attr in _BOOLS:
        return raw if isinstance(raw, bool) else None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    return None


def parse_memstats_lines(lines: Iterable[str], *, arrays: bool = True) -> MemStats:
    """Parse the `# Name = value` lines that follow `# runtime.MemStats` (other lines are ignored).

    A value that does not parse leaves its field None instead of failing the whole reading: one odd field
    (a future Go printing a new format) must not blind every rule that needs the others. `arrays=False`
    leaves PauseNs/PauseEnd None without converting them (the result equals `without_arrays()` of the
    full parse; their entry budget is still enforced): the per-interval sample keeps no arrays, and
    converting 512 numbers was a tenth of a sample's CPU.
    """
    values: dict[str, Any] = {}
    for line in lines:
        name, sep, raw = line.strip().removeprefix("#").partition("=")
        if not sep:
            continue
        name = name.strip()
        if name in _PAIRS:
            inuse, slash, sys = raw.partition("/")
            inuse_attr, sys_attr = _PAIRS[name]
            values[inuse_attr] = _int(inuse) if slash else None
            values[sys_attr] = _int(sys) if slash else None
            continue
        attr = GO_FIELDS.get(name)
        if attr is None:
            continue
        if not arrays and attr in _ARRAYS:
            if len(raw.split(None, MAX_ARRAY_ENTRIES)) > MAX_ARRAY_ENTRIES:
                raise BudgetExceeded(
                    "entries in a MemStats array", "max_memstats_array_entries", MAX_ARRAY_ENTRIES
                )
            continue
        values[attr] = _convert_text(attr, raw)
    return MemStats(**values)
