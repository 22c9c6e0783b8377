"""We check that keeping the recent samples as columns changes nothing a capture writes: the manifest's
`memstatsSeries` and the goroutine count it checks are those of the whole Samples, whatever they held (None,
values outside int64 from a hostile target, a changed target name, every RSS source), and that the window
keeps only the newest samples and costs a fraction of the Sample objects it replaces."""

from __future__ import annotations

import collections
import random
import tracemalloc

import pytest

from memorywatch.engine.capture import _series
from memorywatch.engine.window import SampleWindow
from memorywatch.pprof.memstats import MemStats
from memorywatch.samples import Sample


def maybe(rnd: random.Random, value: int) -> int | None:
    roll = rnd.random()
    if roll < 0.1:
        return None
    if roll < 0.13:
        return rnd.choice([2**63, 2**70, -(2**63), -(2**64), 2**63 - 1, -(2**63) + 1])
    return value


def random_sample(rnd: random.Random, i: int) -> Sample:
    memstats = None
    if rnd.random() > 0.1:
        memstats = MemStats(
            heap_alloc=maybe(rnd, rnd.randrange(2**40)),
            heap_inuse=maybe(rnd, rnd.randrange(2**40)),
            heap_objects=maybe(rnd, rnd.randrange(2**30)),
            heap_released=maybe(rnd, rnd.randrange(2**40)),
            stack_inuse=maybe(rnd, rnd.randrange(2**30)),
            sys=maybe(rnd, rnd.randrange(2**41)),
            next_gc=maybe(rnd, rnd.randrange(2**40)),
            num_gc=maybe(rnd, i),
            max_rss=maybe(rnd, rnd.randrange(2**40)),
            pause_ns=tuple(range(256)),
            mallocs=rnd.randrange(2**40),
        )
    return Sample(
        target=rnd.choice(["ns/pod-a", "ns/pod-a", "ns/pod-b"]),
        time=1.7e9 + 15.0 * i + rnd.random(),
        goroutines=maybe(rnd, rnd.randrange(10**6)),
        memstats=memstats,
        heap_live_bytes=maybe(rnd, rnd.randrange(2**40)),
        heap_live_objects=maybe(rnd, rnd.randrange(2**30)),
        rss_bytes=maybe(rnd, rnd.randrange(2**40)),
        rss_source=rnd.choice([None, "proc", "prometheus", "metrics-api", "maxrss"]),
        threads=rnd.randrange(100),
        heap_sites=tuple(
            (rnd.randrange(2**32), rnd.randrange(2**30), rnd.randrange(2**32)) for _ in range(32)
        ),
    )


@pytest.mark.parametrize("seed", range(5))
def test_a_capture_writes_the_same_series_from_the_columns(seed: int) -> None:
    rnd = random.Random(seed)
    window, reference = SampleWindow(240), collections.deque[Sample](maxlen=240)
    for i in range(700):
        sample = random_sample(rnd, i)
        window.append(sample)
        reference.append(sample)
        if i % 37 == 0 or i > 690:
            assert len(window) == len(reference)
            samples = window.samples()
            assert _series(samples) == _series(list(reference))
            assert [s.target for s in samples] == [s.target for s in reference]
            assert window.last_goroutines() == reference[-1].goroutines


def test_many_distinct_targets_and_sources_keep_their_names() -> None:
    window = SampleWindow(10)
    for i in range(300):  # far more distinct names than the code table keeps before it is rebuilt
        window.append(Sample(target=f"ns/pod-{i}", time=float(i), rss_source=f"source-{i % 97}"))
    samples = window.samples()
    assert [s.target for s in samples] == [f"ns/pod-{i}" for i in range(290, 300)]
    assert [s.rss_source for s in samples] == [f"source-{i % 97}" for i in range(290, 300)]


def test_clear_forgets_everything_and_an_empty_window_has_no_goroutine_count() -> None:
    window = SampleWindow(3)
    window.append(Sample(target="t", time=1.0, goroutines=5))
    window.clear()
    assert len(window) == 0 and window.samples() == [] and window.last_goroutines() is None
    with pytest.raises(ValueError, match="at least one"):
        SampleWindow(0)


def filled_window(samples: list[Sample]) -> tuple[SampleWindow, int]:
    """A window of len(samples) filled with them, and the bytes (tracemalloc) it took to build."""
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    window = SampleWindow(len(samples))
    window.extend(samples)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return window, after - before


def test_a_full_window_costs_a_fraction_of_the_samples_it_replaces() -> None:
    rnd = random.Random(1)
    samples = [random_sample(rnd, i) for i in range(240)]
    window, traced = filled_window(samples)
    assert len(window) == 240
    # 13 columns (int64 once a value needs it), the times and two code columns: at most ~30 KiB.
    assert traced < 40 * 1024, traced


def test_a_column_widens_exactly_when_a_value_does_not_fit() -> None:
    # Each column starts as int16 and widens on the first value it cannot hold; the lowest value of each
    # width is its None sentinel, so the values next to the sentinels must come back as themselves.
    edges = [0, None, 1, -1, 2**15 - 1, -(2**15) + 1, None, -(2**15), 2**15, 2**31 - 1, -(2**31) + 1]
    edges += [None, -(2**31), 2**31, 2**63 - 1, -(2**63) + 1, -(2**63), 2**63, None, 7]
    window, reference = SampleWindow(len(edges)), collections.deque[Sample](maxlen=len(edges))
    for i, value in enumerate(edges):
        memstats = MemStats(heap_alloc=value, num_gc=i)
        sample = Sample(target="t", time=float(i), goroutines=value, memstats=memstats, rss_bytes=value)
        window.append(sample)
        reference.append(sample)
        samples = window.samples()
        assert _series(samples) == _series(list(reference))
        assert [s.goroutines for s in samples] == [s.goroutines for s in reference]
        assert window.last_goroutines() == value


def test_small_counts_and_byte_figures_below_2_gib_take_a_quarter_to_half_of_int64_columns() -> None:
    samples = [
        Sample(
            target="ns/pod",
            time=1.7e9 + 15.0 * i,
            goroutines=1000 + i,
            memstats=MemStats(heap_alloc=300_000_000 + i, num_gc=5000 + i, sys=900_000_000),
            heap_live_bytes=200_000_000 + 4096 * i,
            rss_bytes=500_000_000,
        )
        for i in range(240)
    ]
    window, traced = filled_window(samples)
    # 13 columns of int16 or int32 (None is int16), the times and two code columns: ~15 KiB; int64: ~30 KiB.
    assert traced < 20 * 1024, traced
    assert _series(window.samples()) == _series(samples)
