"""Synthetic sample streams with synthetic time for the rule tests, plus the recorded goroutine fixtures."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from memorywatch.pprof.goroutines import GoroutineProfile, parse_goroutine_debug1
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.engine import Judgement, TargetJudge
from memorywatch.rules.model import Breach, Probe, RuleKind, RuleSpec
from memorywatch.samples import Sample

T0 = 1_760_000_000.0
MIB = 2**20
FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "go1.26"


def fixture_profile(name: str) -> GoroutineProfile:
    return parse_goroutine_debug1((FIXTURES / name).read_text())


def relocated(profile: GoroutineProfile, offset: int) -> GoroutineProfile:
    """The same stacks at other addresses, as a rebuilt or re-randomised (PIE) binary would show them."""
    groups = tuple(dataclasses.replace(g, pcs=tuple(pc + offset for pc in g.pcs)) for g in profile.groups)
    return GoroutineProfile(total=profile.total, groups=groups)


def spec(kind: RuleKind, name: str | None = None, **fields: Any) -> RuleSpec:
    return RuleSpec(name=name or kind.value.lower(), kind=kind, **fields)


def stream(
    seconds: float, interval: float, make: Callable[[int, float], dict[str, Any]], *, start: float = T0
) -> list[Sample]:
    """Samples every `interval` for `seconds`; `make(i, elapsed)` returns the Sample fields."""
    out = []
    i = 0
    while i * interval <= seconds + 1e-9:
        elapsed = i * interval
        out.append(Sample(target="pod", time=start + elapsed, **make(i, elapsed)))
        i += 1
    return out


@dataclasses.dataclass
class Run:
    judgements: list[tuple[Sample, Judgement]]

    @property
    def breaches(self) -> list[Breach]:
        return [b for _, j in self.judgements for b in j.breaches]

    @property
    def notes(self) -> list[str]:
        return [n for _, j in self.judgements for n in j.notes]

    def first_breach_after(self, start: float = T0) -> float | None:
        return self.breaches[0].time - start if self.breaches else None


def observe(judge: TargetJudge, sample: Sample) -> Judgement:
    """`judge.observe`, checking what every consumer relies on: evidence that serialises to JSON."""
    judgement = judge.observe(sample)
    for breach in judgement.breaches:
        json.dumps(breach.evidence, allow_nan=False)
    return judgement


def feed(judge: TargetJudge, samples: Iterable[Sample]) -> Run:
    return Run([(s, observe(judge, s)) for s in samples])


def feed_with_stacks(
    judge: TargetJudge, samples: Sequence[Sample], profiles: Callable[[int], GoroutineProfile | None]
) -> tuple[Run, int]:
    """Feed samples, attaching `profiles(n)` (n = stacks fetched so far) whenever the judge asked for
    stacks on the previous sample, as the scraper does. Returns the run and how many were fetched."""
    judgements = []
    fetched = 0
    for sample in samples:
        current = sample
        if Probe.GOROUTINE_STACKS in judge.wants():
            profile = profiles(fetched)
            if profile is not None:
                current = dataclasses.replace(sample, goroutine_profile=profile)
                fetched += 1
        judgements.append((current, observe(judge, current)))
    return Run(judgements), fetched


def gc_memstats(num_gc: int, **fields: Any) -> MemStats:
    return MemStats(num_gc=num_gc, **fields)
