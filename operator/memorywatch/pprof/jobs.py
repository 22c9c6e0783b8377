"""The expensive parses, packaged as jobs for a bounded worker process: each takes bytes and a ParseBudget and
returns a small value (a summary, not a whole parsed profile), so little crosses back to the operator.

Pure functions (no I/O, no clock); `memorywatch.workers` runs them under a deadline and a memory limit, and
they can be called directly as well (tests, a pool-less caller).
"""

from __future__ import annotations

import dataclasses

from memorywatch.pprof.errors import BudgetExceeded, PprofError
from memorywatch.pprof.expvar import ExpvarSnapshot, parse_expvar
from memorywatch.pprof.goroutines import (
    GoroutineProfile,
    GroupGrowth,
    diff_goroutines,
    parse_goroutine_debug1,
)
from memorywatch.pprof.profiles import (
    ProfileInfo,
    SiteGrowth,
    parse_profile,
    profile_info,
    top_growth_by_function,
)
from memorywatch.pprof.prometheus_text import PromSnapshot, parse_prometheus_text

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ParseBudget:
    """What one parse of target data may hold. Defaults suit a 1 GiB operator; `scrape.Limits` sizes them
    from the operator's own memory limit.

    - `max_decompressed_bytes`: a gunzipped protobuf profile. Decoding costs ~25x the decompressed size in
      Python objects, so this is about a tenth of a worker's memory budget.
    - `max_profile_samples`: samples (and locations) in one profile; real heap profiles have thousands.
    - `max_goroutine_groups`: distinct stacks in goroutine?debug=1; real services have hundreds.
    - `max_memstats_array_entries` (fixed, 4096, in pprof.memstats): PauseNs/PauseEnd have 256 entries.
    """

    max_decompressed_bytes: int = 32 * MiB
    max_profile_samples: int = 200_000
    max_goroutine_groups: int = 10_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"ParseBudget.{field.name} must be positive")


@dataclasses.dataclass(frozen=True)
class HeapGrowthResult:
    """Where the heap grew between a baseline and now; `note` says why the baseline could not be used."""

    growth: tuple[SiteGrowth, ...]
    info: ProfileInfo
    baseline_used: bool
    note: str | None = None


def check_profile(data: bytes, budget: ParseBudget) -> ProfileInfo:
    """Decode a profile fully (so a corrupt one never becomes a capture file silently) and summarise it."""
    profile = parse_profile(data, budget.max_decompressed_bytes, max_samples=budget.max_profile_samples)
    return profile_info(profile)


def heap_growth(
    baseline: bytes | None, heap: bytes, budget: ParseBudget, limit: int = 10
) -> HeapGrowthResult:
    """The top in-use growth by function from `baseline` (parsed only now, lazily) to `heap`.

    A baseline that does not parse or is over budget is reported in `note` and the growth is ranked
    against nothing; a `heap` that does not parse raises its PprofError."""
    new = parse_profile(heap, budget.max_decompressed_bytes, max_samples=budget.max_profile_samples)
    info = profile_info(new)
    base = None
    note = None
    if baseline:
        try:
            base = parse_profile(
                baseline, budget.max_decompressed_bytes, max_samples=budget.max_profile_samples
            )
        except PprofError as e:
            note = f"the baseline heap profile was not used: {e}"
    growth = top_growth_by_function(base, new, sample_type="inuse_space", limit=limit)
    return HeapGrowthResult(tuple(growth), info, base is not None, note)


def goroutine_growth(
    baseline: bytes | None, now: bytes, budget: ParseBudget
) -> tuple[tuple[GroupGrowth, ...], int]:
    """Per-stack growth between two goroutine?debug=1 texts, and the total now. At most 50 groups return."""
    current = parse_goroutine_debug1(now.decode("utf-8", "replace"), max_groups=budget.max_goroutine_groups)
    before = GoroutineProfile(total=0, groups=())
    if baseline:
        try:
            before = parse_goroutine_debug1(
                baseline.decode("utf-8", "replace"), max_groups=budget.max_goroutine_groups
            )
        except PprofError:
            before = GoroutineProfile(total=0, groups=())
    return tuple(diff_goroutines(before, current)[:50]), current.total


def goroutines(data: bytes, budget: ParseBudget) -> GoroutineProfile:
    """goroutine?debug=1 parsed under the group budget."""
    return parse_goroutine_debug1(data.decode("utf-8", "replace"), max_groups=budget.max_goroutine_groups)


def metrics(data: bytes) -> PromSnapshot:
    """/metrics parsed (only the few series the rules use)."""
    return parse_prometheus_text(data.decode("utf-8", "replace"))


def expvar(data: bytes) -> ExpvarSnapshot:
    """/debug/vars parsed."""
    return parse_expvar(data)


__all__ = [
    "BudgetExceeded",
    "HeapGrowthResult",
    "ParseBudget",
    "check_profile",
    "expvar",
    "goroutine_growth",
    "goroutines",
    "heap_growth",
    "metrics",
]
