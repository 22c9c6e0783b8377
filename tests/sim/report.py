"""Print the simulation table quoted in docs/rules.md: `python -m tests.sim.report` from the repository root."""

from __future__ import annotations

import time

from tests.sim.harness import GOROUTINE_LEAK, HEAP_GROWTH, SEEDS, simulate
from tests.sim.shapes import LEAKS, LOOKALIKES


def main() -> None:
    started = time.perf_counter()
    print(
        f"| shape | rule | fires in (share of evaluated windows, {SEEDS} seeds) | first fire after warm-up |"
    )
    print("|---|---|---|---|")
    for shape in (*LEAKS, *LOOKALIKES):
        for rule in (GOROUTINE_LEAK, HEAP_GROWTH):
            out = simulate(shape, rule)
            delays = sorted(out.first_fire_delays)
            first = (
                f"median {delays[len(delays) // 2]:.0f}s ({len(delays)}/{SEEDS} seeds)" if delays else "never"
            )
            print(
                f"| {shape.name} | {rule.name} | {out.share:.1%} ({out.firing}/{out.evaluated}) | {first} |"
            )
    print(f"\n({time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()
