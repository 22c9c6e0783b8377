"""We check the compact forms the rules keep for a whole window: heap-site snapshots packed into one int64
array come back exactly (and a hostile snapshot with values outside int64 is kept as it came)."""

from __future__ import annotations

import array

from memorywatch.rules.heap_growth import pack_sites, unpack_sites


def test_sites_come_back_exactly_from_their_packed_form() -> None:
    sites = tuple((key, key * 4096, key * 8192) for key in range(32))
    packed = pack_sites(sites)
    assert isinstance(packed, array.array) and len(packed) == 96
    assert unpack_sites(packed) == sites
    assert unpack_sites(pack_sites(())) == ()


def test_a_snapshot_outside_int64_is_kept_as_it_came() -> None:
    hostile = ((1, 2**64, 3), (2, -(2**63), 0))
    assert pack_sites(hostile) is hostile
    assert unpack_sites(pack_sites(hostile)) == hostile
