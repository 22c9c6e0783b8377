"""The rule vocabulary shared by the engine, the command line and the operator: specs, breaches, probes."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


class RuleKind(enum.StrEnum):
    GOROUTINE_GROWTH = "GoroutineGrowth"
    HEAP_GROWTH = "HeapGrowth"
    FINALIZER_BACKLOG = "FinalizerBacklog"
    NON_HEAP_GROWTH = "NonHeapGrowth"
    MEMORY_LIMIT = "MemoryLimit"
    THRESHOLD = "Threshold"


class Probe(enum.StrEnum):
    """Extra data a rule asks the scraper to fetch on the next scrape, because something already looks suspicious."""

    GOROUTINE_STACKS = "goroutine-stacks"  # goroutine?debug=1
    # goroutine?debug=2, read for goroutine IDs only (rules/identity.py); never asked above the goroutine
    # count ceiling (rules/guards.py), and cut at a byte budget by the scraper.
    GOROUTINE_DUMP = "goroutine-dump"
    # heap?debug=1&gc=1: one forced GC, so a rule judging GC points gets a fresh one. Asked only when the
    # runtime has not collected for a tenth of the rule's window while the heap grew (see gc_points.py).
    FRESH_GC = "fresh-gc"


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """One rule as configured (`spec.rules[]` of a MemoryWatch, or an entry of `watch --rules`).

    Durations are seconds; `min_growth` is in the rule's unit (goroutines for GoroutineGrowth, objects or
    bytes for FinalizerBacklog, bytes for the others). None means the kind's default.
    """

    name: str
    kind: RuleKind
    window_seconds: float | None = None
    min_growth: float | None = None
    for_seconds: float | None = None
    expression: str | None = None
    horizon_seconds: float | None = None
    warmup_seconds: float | None = None
    cooldown_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class Breach:
    """A rule's verdict that a target leaks. `message` is one sentence saying what the evidence means;
    `evidence` holds the numbers (JSON-serialisable): the window, the fitted growth, the values judged."""

    rule: str
    kind: RuleKind
    target: str
    time: float
    message: str
    evidence: Mapping[str, Any]
