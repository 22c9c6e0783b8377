"""Which operator replica scrapes which pod, when replicas share the pods (sharding, docs/scaling.md).

Pure: no I/O, no clock of its own. Ownership is rendezvous hashing (highest random weight): every member scores
every pod key with a stable hash (BLAKE2b of member and key, the same in every process and Python version, unlike
`hash()`), and the highest score owns the pod. Every replica that sees the same member set computes the same
owner without talking to the others, and when a member joins or leaves only the pods whose owner changes move:
about 1/N of them, never a reshuffle.

Who the members are comes from Kubernetes Leases (`membership.MemberLeases`); `live_members` is the pure rule
that turns the Leases read into the live set.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable


def _score(member: str, key: str) -> int:
    # NUL appears in no Kubernetes name, so (member, key) pairs never collide as strings.
    return int.from_bytes(hashlib.blake2b(f"{member}\0{key}".encode(), digest_size=8).digest(), "big")


def owner(members: Iterable[str], key: str) -> str | None:
    """The member that owns `key` (highest score; ties, which need a 64-bit collision, go to the smaller
    name), or None when there is no member at all."""
    best: tuple[int, str] | None = None
    for m in members:
        s = _score(m, key)
        if best is None or s > best[0] or (s == best[0] and m < best[1]):
            best = (s, m)
    return best[1] if best is not None else None


def pod_key(namespace: str, name: str) -> str:
    """The key a pod is sharded by: namespace/name, so a pod replaced under the same name (a StatefulSet's)
    stays with the replica that holds its series."""
    return f"{namespace}/{name}"


@dataclasses.dataclass(frozen=True)
class MemberLease:
    """What `live_members` needs from one member's Lease (times are epoch seconds; None when unset)."""

    identity: str
    renew_time: float | None
    duration_seconds: float | None


def live_members(leases: Iterable[MemberLease], now: float, me: str) -> frozenset[str]:
    """The members whose Lease was renewed less than its duration ago, and always `me`: a replica never
    computes a view in which it owns nothing just because its own Lease is not visible yet."""
    live = {
        lease.identity
        for lease in leases
        if lease.identity
        and lease.renew_time is not None
        and lease.duration_seconds is not None
        and lease.duration_seconds > 0
        and now < lease.renew_time + lease.duration_seconds
    }
    live.add(me)
    return frozenset(live)


#: Owners a view remembers (a pod key and a name each): beyond this many it starts again, bounding memory.
MAX_CACHED_OWNERS = 200_000


@dataclasses.dataclass(frozen=True)
class ShardView:
    """One replica's view of the members: which pods it owns. Its members never change (the membership loop
    swaps in a new view), so each pod's owner is computed once per view and then looked up: 5,000 pods cost
    one hash per member each when the view changes, and a dict lookup each at every other reconcile."""

    me: str
    members: frozenset[str]
    _owners: dict[str, str | None] = dataclasses.field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def owner(self, namespace: str, name: str) -> str | None:
        key = pod_key(namespace, name)
        try:
            return self._owners[key]
        except KeyError:
            pass
        if len(self._owners) >= MAX_CACHED_OWNERS:
            self._owners.clear()
        got = self._owners[key] = owner(self.members, key)
        return got

    def owns(self, namespace: str, name: str) -> bool:
        return self.owner(namespace, name) == self.me

    @classmethod
    def alone(cls, me: str) -> ShardView:
        """The view before any Lease was read: this replica owns every pod (the same as without sharding)."""
        return cls(me, frozenset({me}))
