"""Sharding membership through Kubernetes Leases (coordination.k8s.io/v1) in the operator's namespace.

Each replica holds its own Lease `memorywatch-member-<identity>` (labelled with its shard group) and renews it every
`renew_seconds`; it lists the group's Leases with a label selector and counts as live every Lease whose
renewTime + leaseDurationSeconds has not passed (`sharding.live_members`). The resulting `ShardView` decides which
pods this replica scrapes.

Failure is bounded and never silent: a failed renewal or list is logged, counted
(memorywatch_shard_membership_errors_total) and retried with backoff, and the replica keeps its last view (it
may then scrape pods another replica also scrapes, never none of its own). Lease times are written with the
holder's clock and judged with the reader's: clocks must agree to well within a lease duration (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from memorywatch import metrics
from memorywatch.actions.ledger import k8s_now
from memorywatch.control.ports import Sleep
from memorywatch.control.sharding import MemberLease, ShardView, live_members
from memorywatch.k8s import ConflictError, Kube, KubeError, NotFoundError

log = logging.getLogger(__name__)

LEASE_PREFIX = "memorywatch-member-"
GROUP_LABEL = "memorywatch.io/shard-group"
#: More member Leases than this in one group is a misconfiguration; the rest are not read (and it is logged).
MAX_MEMBERS = 256
#: A Lease dead for this many durations (and at least GC_MIN_SECONDS) is deleted by a live member.
GC_DURATIONS = 10
GC_MIN_SECONDS = 300.0


def lease_name(identity: str) -> str:
    return (LEASE_PREFIX + identity)[:253]


class MemberLeases:
    """One per operator process. `run` renews and reads until cancelled; `view` is always usable."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        identity: str,
        *,
        group: str = "memorywatch",
        lease_seconds: float = 15.0,
        renew_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if lease_seconds < 2:
            raise ValueError(
                f"the shard member lease duration must be at least 2 seconds, not {lease_seconds}"
            )
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.group = group
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds if renew_seconds is not None else lease_seconds / 3
        self.clock = clock
        self.sleep = sleep
        self.api = k8s.CoordinationV1Api(kube.api)
        self.name = lease_name(identity)
        self.view = ShardView.alone(identity)
        self.last_ok: float | None = None
        self._own: Any = None  # the last Lease object written, to renew without reading it first

    async def run(self) -> None:
        """Renew and read until cancelled; a failure waits 1, 2, 4 ... s (never longer than a renewal period)."""
        failures = 0
        while True:
            if await self.refresh():
                failures = 0
                await self.sleep(self.renew_seconds)
            else:
                failures += 1
                await self.sleep(min(self.renew_seconds, 2.0 ** (failures - 1)))

    async def refresh(self) -> bool:
        """Renew this replica's Lease, then read the group's: True when both worked and the view is current."""
        try:
            await self._renew()
            leases = await self._list()
        except KubeError as e:
            metrics.SHARD_MEMBERSHIP_ERRORS.inc()
            age = f"{self.clock() - self.last_ok:.0f} s old" if self.last_ok is not None else "never read"
            log.warning(
                "shard membership: %s; keeping the last view (%d members, %s)", e, len(self.view.members), age
            )
            return False
        now = self.clock()
        members = live_members((_member(x) for x in leases), now, self.identity)
        if members != self.view.members:  # a new view only on a change: it keeps the owners it computed
            log.info("shard members now %s (this replica is %s)", ", ".join(sorted(members)), self.identity)
            self.view = ShardView(self.identity, members)
        self.last_ok = now
        metrics.SHARD_MEMBERS.set(len(members))
        metrics.SHARD_VIEW_UPDATED.set(now)
        await self._collect(leases, now)
        return True

    async def leave(self) -> None:
        """Delete this replica's Lease (a clean shutdown): the others take its pods at their next read instead
        of after a lease duration. Best effort."""
        with contextlib.suppress(KubeError):
            await self.kube.call(
                f"delete Lease {self.namespace}/{self.name}",
                self.api.delete_namespaced_lease,
                self.name,
                self.namespace,
            )

    async def _renew(self) -> None:
        what = f"Lease {self.namespace}/{self.name}"
        now = k8s_now(self.clock())
        if self._own is None:
            try:
                self._own = await self.kube.call(
                    f"get {what}", self.api.read_namespaced_lease, self.name, self.namespace
                )
            except NotFoundError:
                body = k8s.V1Lease(
                    metadata=k8s.V1ObjectMeta(
                        name=self.name, namespace=self.namespace, labels=self._labels()
                    ),
                    spec=self._spec(now),
                )
                self._own = await self.kube.call(
                    f"create {what}", self.api.create_namespaced_lease, self.namespace, body
                )
                return
        lease = self._own
        lease.metadata.labels = {**(lease.metadata.labels or {}), **self._labels()}
        lease.spec = self._spec(now)
        try:
            self._own = await self.kube.call(
                f"update {what}", self.api.replace_namespaced_lease, self.name, self.namespace, lease
            )
        except (ConflictError, NotFoundError):
            self._own = None  # changed or deleted by someone else: read (or create) it again next time
            raise

    def _spec(self, now: Any) -> Any:
        return k8s.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, round(self.lease_seconds)),
            renew_time=now,
        )

    def _labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "memorywatch",
            "app.kubernetes.io/component": "shard-member",
            GROUP_LABEL: self.group,
        }

    async def _list(self) -> list[Any]:
        got = await self.kube.call(
            f"list Leases in {self.namespace} labelled {GROUP_LABEL}={self.group}",
            self.api.list_namespaced_lease,
            self.namespace,
            label_selector=f"{GROUP_LABEL}={self.group}",
            limit=MAX_MEMBERS,
        )
        if got.metadata is not None and got.metadata._continue:
            log.warning(
                "shard membership: more than %d member Leases in group %s; only the first are read",
                MAX_MEMBERS,
                self.group,
            )
        return list(got.items or [])

    async def _collect(self, leases: list[Any], now: float) -> None:
        """Delete Leases dead for a long time (replaced pods leave one each); conditional on the version read,
        so a member that came back in between keeps its Lease. At most a few per round; failures only logged."""
        grace = max(GC_MIN_SECONDS, GC_DURATIONS * self.lease_seconds)
        dead = [
            x
            for x in leases
            if (m := _member(x)).identity != self.identity
            and m.renew_time is not None
            and now > m.renew_time + (m.duration_seconds or 0) + grace
        ]
        for x in dead[:4]:
            try:
                await self.kube.call(
                    f"delete dead Lease {self.namespace}/{x.metadata.name}",
                    self.api.delete_namespaced_lease,
                    x.metadata.name,
                    self.namespace,
                    body=k8s.V1DeleteOptions(
                        preconditions=k8s.V1Preconditions(resource_version=x.metadata.resource_version)
                    ),
                )
            except KubeError as e:
                log.debug("shard membership: %s", e)


def _member(lease: Any) -> MemberLease:
    spec = lease.spec
    renew = getattr(spec, "renew_time", None) if spec is not None else None
    duration = getattr(spec, "lease_duration_seconds", None) if spec is not None else None
    return MemberLease(
        identity=str(getattr(spec, "holder_identity", None) or ""),
        renew_time=renew.timestamp() if renew is not None else None,
        duration_seconds=float(duration) if duration is not None else None,
    )
