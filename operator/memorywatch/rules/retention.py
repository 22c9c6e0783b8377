"""Retention per allocation site as a confirmation signal for HeapGrowth.

heap?debug=1 gives, per allocation stack, the bytes in use (as of the last GC) and the bytes ever allocated
there. Between a snapshot taken when the heap first looked suspicious and now, a site that leaks keeps what it
allocates (in-use growth ≈ allocated growth), while buffers that grow with load, pools and caches once warm
free at the rate they allocate (in-use grows by a sliver of what was allocated). Only the 32 largest sites
are kept per sample (Sample.heap_sites). A site missing from the older snapshot counts from zero: it is new
since then, or was too small to be among the 32 largest, and either way what it allocated since the process
started is at least what it allocated between the snapshots, so a site that frees what it allocates still
reads as freeing and a leaking site (which keeps nearly all it ever allocated) still reads as keeping.
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
# The sites cannot speak for the rise: the sites that grew explain under half of it (sampling noise on a
# short window, a profile up to two GC cycles old), or they kept between a quarter and a half of what they
# allocated. HeapGrowth holds such a breach back as it does a FREED one.
UNCLEAR = "unclear"


@dataclasses.dataclass(frozen=True)
class Retention:
    verdict: str
    phrase: str
    evidence: dict[str, Any]


def judge(older: Sites, newer: Sites, live_growth_bytes: float) -> Retention | None:
    """What the sites that grew did with their allocations between two snapshots; None when the live heap
    did not grow (nothing to explain)."""
    before = {key: (inuse, alloc) for key, inuse, alloc in older}
    grown_inuse = grown_alloc = 0
    weighted_kept = 0.0
    sites = 0
    for key, inuse, alloc in newer:
        old_inuse, old_alloc = before.get(key, (0, 0))
        d_inuse, d_alloc = inuse - old_inuse, alloc - old_alloc
        if d_inuse > 0 and d_alloc > 0:
            grown_inuse += d_inuse
            grown_alloc += d_alloc
            # Each site's own kept share, weighted by what it added: a busy site whose in-use wobbled up a
            # little must not drown the site that really grew.
            weighted_kept += d_inuse * min(1.0, d_inuse / d_alloc)
            sites += 1
    if live_growth_bytes <= 0:
        return None
    kept = weighted_kept / grown_inuse if grown_inuse else 0.0
    evidence = {
        "growing_sites": sites,
        "inuse_growth": grown_inuse,
        "allocated": grown_alloc,
        "kept_share": round(kept, 4),
    }
    if grown_inuse < MIN_SHARE_OF_GROWTH * live_growth_bytes:
        phrase = (
            f"the allocation sites that grew account for {units.format_bytes(grown_inuse)} of a"
            f" {units.format_bytes(live_growth_bytes)} rise, too little to say whether they keep or free it"
        )
        return Retention(UNCLEAR, phrase, evidence)
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
    phrase = (
        f"the sites that grew kept {kept:.0%} of the {units.format_bytes(grown_alloc)} they allocated,"
        " neither a leak's share nor a load's"
    )
    return Retention(UNCLEAR, phrase, evidence)
