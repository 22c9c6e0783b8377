"""We check that what a judge keeps of its last sample between samples (restart_fields) finds exactly the
restarts, and the reasons, that the whole sample would."""

from __future__ import annotations

import itertools
import random

import pytest

from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.engine import restart_fields, restart_reason
from memorywatch.samples import Sample


def _restart_sample(rnd: random.Random, i: int) -> Sample:
    def maybe(value: int) -> int | None:
        return None if rnd.random() < 0.15 else value

    memstats = None
    if rnd.random() > 0.1:
        memstats = MemStats(
            num_gc=maybe(rnd.randrange(100)),
            num_forced_gc=maybe(rnd.randrange(3)),
            total_alloc=maybe(rnd.randrange(10**6)),
            mallocs=maybe(rnd.randrange(10**6)),
            frees=maybe(rnd.randrange(10**6)),
            max_rss=maybe(rnd.randrange(10**9)),
            heap_alloc=rnd.randrange(10**9),
            pause_ns=tuple(range(256)),
        )
    return Sample(
        target="ns/pod",
        time=float(i),
        goroutines=rnd.randrange(1000),
        memstats=memstats,
        finalizers_queued=maybe(rnd.randrange(100)),
        finalizers_executed=maybe(rnd.randrange(100)),
        process_start_seconds=maybe(1_700_000_000 + rnd.randrange(3)),
        heap_sites=tuple(
            (rnd.randrange(2**32), rnd.randrange(2**20), rnd.randrange(2**20)) for _ in range(32)
        ),
    )


@pytest.mark.parametrize("seed", range(3))
def test_what_a_judge_keeps_of_its_last_sample_finds_the_same_restarts(seed: int) -> None:
    # The judge keeps only restart_fields(previous): every restart the whole sample would reveal (a counter
    # going down, a new start time) and every non-restart must come out the same, reason included.
    rnd = random.Random(seed)
    samples = [_restart_sample(rnd, i) for i in range(400)]
    for previous, current in itertools.pairwise(samples):
        kept = restart_fields(previous)
        assert restart_reason(kept, current) == restart_reason(previous, current)
        assert kept.time == previous.time and kept.heap_sites is None
    assert any(restart_reason(a, b) for a, b in itertools.pairwise(samples))
    assert not all(restart_reason(a, b) for a, b in itertools.pairwise(samples))
