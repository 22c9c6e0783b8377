"""Benchmark: render the report for a large synthetic heap profile (not a test; run it by hand).

    .venv/bin/python tests/report/bench_render.py [samples] [depth]

Builds two pprof profiles with `samples` random stacks of `depth` frames over 2,000 functions (the later
one with every stack grown), then times `render_report` and prints the page size and peak memory.
"""

from __future__ import annotations

import gzip
import random
import sys
import time
import tracemalloc

from memorywatch.pprof import profile_pb2
from memorywatch.report import ReportInput, render_report


def synthetic_profile(samples: int, depth: int, seed: int, grow: int) -> bytes:
    rnd = random.Random(seed)
    p = profile_pb2.Profile()
    strings = ["", "objects", "count", "space", "bytes", "inuse_objects", "inuse_space"]
    for t, u in ((5, 1), (6, 4)):
        vt = p.sample_type.add()
        vt.type, vt.unit = t, u
    for i in range(1, 2001):
        strings.append(f"example.com/svc/pkg{i % 40}.Function{i}")
        f = p.function.add()
        f.id, f.name, f.filename = i, len(strings) - 1, 0
        loc = p.location.add()
        loc.id = i
        loc.line.add(function_id=i, line=i)
    p.string_table.extend(strings)
    stacks = random.Random(1)
    for _ in range(samples):
        s = p.sample.add()
        # A call tree like a real program's: each level picks one of 4 callees of the frame above.
        path, frames = 0, []
        for _ in range(depth):
            path = path * 4 + stacks.randint(0, 3)
            frames.append(path % 2000 + 1)
        s.location_id.extend(reversed(frames))  # leaf first, as pprof stores it
        s.value.extend([1, 1024 * (1 + rnd.randint(0, grow))])
    return gzip.compress(p.SerializeToString())


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    base = synthetic_profile(samples, depth, seed=1, grow=0)
    later = synthetic_profile(samples, depth, seed=2, grow=64)
    started = time.perf_counter()
    page = render_report(ReportInput({"breaches": []}, later, base))
    elapsed = time.perf_counter() - started
    tracemalloc.start()  # a second run for memory: tracing slows it down several times
    render_report(ReportInput({"breaches": []}, later, base))
    _, peak = tracemalloc.get_traced_memory()
    print(
        f"{samples} samples x {depth} frames ({len(later) // 1024} KiB gzipped): "
        f"{elapsed:.2f}s, page {len(page) // 1024} KiB, peak {peak // (1 << 20)} MiB (tracemalloc)"
    )


if __name__ == "__main__":
    main()
