"""Do no harm: limits on what the rules may ask of a target, shared by the judge and the capture.

- A forced GC (`heap?debug=1&gc=1`, Probe.FRESH_GC) stops the world of a service that may have done nothing
  wrong. The runtime itself forces a GC when none ran for 2 minutes (`forcegcperiod` in runtime/proc.go), so
  MemoryWatch never forces one more often than that per target, whatever its rules ask.
- `goroutine?debug=2` holds the world stopped while it formats every goroutine (`stwAllGoroutinesStack`), so
  the pause grows with the goroutine count. Above `MAX_DUMP_GOROUTINES` no such dump is taken (holmes refuses
  to dump past a configured count for the same reason); the count-based verdict and the grouped
  `goroutine?debug=1` profile (two short pauses, concurrent collection) still stand.
"""

from __future__ import annotations

from memorywatch.api import units

# runtime/proc.go: `forcegcperiod = 2 * 60 * 1e9`.
RUNTIME_FORCED_GC_SECONDS = 120.0
# debug=2 formats every stack with the world stopped: ~1–5 µs per goroutine, so 50,000 goroutines already
# mean a pause of the order of 100 ms, and the text runs to tens of MB (Go truncates it at 64 MB).
MAX_DUMP_GOROUTINES = 50_000
# Identity dumps (rules/identity.py) are taken several times per window, and one is read only up to 16 MiB
# (about 10,000 goroutines of typical stacks): past this count none is asked.
MAX_IDENTITY_DUMP_GOROUTINES = 10_000


def stack_dump_refusal(goroutines: int | None) -> str | None:
    """Why a `goroutine?debug=2` dump must not be taken of a target with `goroutines` goroutines, or None."""
    if goroutines is None or goroutines <= MAX_DUMP_GOROUTINES:
        return None
    return (
        f"goroutine?debug=2 not taken: the target has {units.format_count(goroutines)} goroutines, above the"
        f" {units.format_count(MAX_DUMP_GOROUTINES)} ceiling for a full stack dump (it stops the world while"
        " it formats every goroutine); the grouped goroutine profile (goroutine.txt) names the stacks instead"
    )
