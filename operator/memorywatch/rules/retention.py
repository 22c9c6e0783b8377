"""Retention per allocation site as a confirmation signal for HeapGrowth.

heap?debug=1 gives, per allocation stack, the bytes in use (as of the last GC) and the bytes ever allocated
there. Between a snapshot taken when the heap first looked suspicious and now, a site that leaks keeps what it
allocates (in-use growth ≈ allocated growth), while buffers that grow with load, pools and caches once warm
free at the rate they allocate (in-use grows by a sliver of what was allocated). Only the 32 largest sites
are kept per sample (Sample.heap_sites), and only sites present in both snapshots are compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from memorywatch.api import units

Sites = Sequence[tuple[int, int, int]]  # (site key, in-use bytes, allocated bytes)

# The sites that grew (each weighted by its in-use growth) kept at least half of what they allocated (a leak
# keeps ~100%); or under a quarter: they free most of what they allocate. Buffers that live a second or two
# under a ramp keep (growth in concurrency) / (allocations over the span): a few % over production windows,
# up to ~10% over a 40 s window. Holding back costs a leak through a busy, shared site only half a window.
KEPT_SHARE = 0.5
FREED_SHARE = 0.25
# The growing sites must explain at least this share of the live-heap growth to speak for it.
MIN_SHARE_OF_GROWTH = 0.5

KEPT = "kept"
FREED = "freed"


@dataclasses.dataclass(frozen=True)
class Retention:
    verdict: str
    phrase: str
    evidence: dict[str, Any]


def judge(older: Sites, newer: Sites, live_growth_bytes: float) -> Retention | None:
    """What the sites that grew did with their allocations between two snapshots, or None."""
    before = {key: (inuse, alloc) for key, inuse, alloc in older}
    grown_inuse = grown_alloc = 0
    weighted_kept = 0.0
    sites = 0
    for key, inuse, alloc in newer:
        if key not in before:
            continue
        d_inuse, d_alloc = inuse - before[key][0], alloc - before[key][1]
        if d_inuse > 0 and d_alloc > 0:
            grown_inuse += d_inuse
            grown_alloc += d_alloc
            # Each site's own kept share, weighted by what it added: a busy site whose in-use wobbled up a
            # little must not drown the site that really grew.
            weighted_kept += d_inuse * min(1.0, d_inuse / d_alloc)
            sites += 1
    if sites == 0 or live_growth_bytes <= 0 or grown_inuse < MIN_SHARE_OF_GROWTH * live_growth_bytes:
        return None
    kept = weighted_kept / grown_inuse
    evidence = {
        "growing_sites": sites,
        "inuse_growth": grown_inuse,
        "allocated": grown_alloc,
        "kept_share": round(kept, 4),
    }
    if kept >= KEPT_SHARE:
        phrase = (
            f"retention per allocation site ({sites} growing site(s) kept {kept:.0%} of what they allocated,"
            f" {units.format_bytes(grown_inuse)} of {units.format_bytes(grown_alloc)})"
        )
        return Retention(KEPT, phrase, evidence)
    if kept < FREED_SHARE:
        phrase = (
            f"the sites that grew free most of what they allocate: they kept {kept:.1%} of the"
            f" {units.format_bytes(grown_alloc)} they allocated"
            " (buffers in flight under load, or a pool; not leaked)"
        )
        return Retention(FREED, phrase, evidence)
    return None
