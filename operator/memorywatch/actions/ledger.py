"""The shared record of recent actions: one Lease (coordination.k8s.io/v1) in the operator's namespace.

`reserve` reads the Lease, asks the pure `ratelimit.admit`, and writes the new record back conditional on the
resourceVersion it read. Two operator replicas reserving at once conflict (409) and the loser reads again, so the
limits hold across HA replicas and restarts, not only in one process. Any failure to read or write the Lease
refuses the action (fail closed, reason RateLimitUnavailable): an action is never taken uncounted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from memorywatch.actions.ratelimit import Admission, RateLimits, admit, decode, encode
from memorywatch.k8s import ConflictError, Kube, KubeError, NotFoundError

log = logging.getLogger(__name__)

LEASE_NAME = "memorywatch-actions"
RECORDS_ANNOTATION = "memorywatch.io/recent-actions"
ATTEMPTS = 8


class LeaseLedger:
    """One per operator process; safe to call concurrently (the API server serialises the writes)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        limits: RateLimits,
        *,
        name: str = LEASE_NAME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.limits = limits
        self.name = name
        self.clock = clock
        self.api = k8s.CoordinationV1Api(kube.api)

    async def reserve(self, namespace: str, *, dry_run: bool = False, workload: str = "") -> Admission:
        """Count one action in `namespace` if both windows allow it and, for a disruptive action, `workload` is
        not taken by another (a dry run only asks, never counts)."""
        for _ in range(ATTEMPTS):
            try:
                lease = await self._read_or_create()
                annotations = dict(lease.metadata.annotations or {})
                verdict = admit(
                    decode(annotations.get(RECORDS_ANNOTATION)),
                    namespace,
                    self.clock(),
                    self.limits,
                    workload,
                )
                if not verdict.allowed or dry_run:
                    return verdict
                annotations[RECORDS_ANNOTATION] = encode(verdict.records)
                lease.metadata.annotations = annotations
                lease.spec.renew_time = k8s_now(self.clock())
                await self.kube.call(
                    f"update Lease {self.namespace}/{self.name}",
                    self.api.replace_namespaced_lease,
                    self.name,
                    self.namespace,
                    lease,
                )
                return verdict
            except ConflictError as e:
                log.debug("action ledger: %s; reading it again", e)
            except KubeError as e:
                return _unavailable(f"the action ledger Lease {self.namespace}/{self.name} is unusable: {e}")
        return _unavailable(
            f"the action ledger Lease {self.namespace}/{self.name} changed {ATTEMPTS} times while reserving"
        )

    async def _read_or_create(self) -> Any:
        what = f"Lease {self.namespace}/{self.name}"
        try:
            return await self.kube.call(
                f"get {what}", self.api.read_namespaced_lease, self.name, self.namespace
            )
        except NotFoundError:
            body = k8s.V1Lease(
                metadata=k8s.V1ObjectMeta(
                    name=self.name,
                    namespace=self.namespace,
                    labels={
                        "app.kubernetes.io/name": "memorywatch",
                        "app.kubernetes.io/component": "action-ledger",
                    },
                ),
                spec=k8s.V1LeaseSpec(renew_time=k8s_now(self.clock())),
            )
            with contextlib.suppress(ConflictError):  # another replica created it first
                await self.kube.call(f"create {what}", self.api.create_namespaced_lease, self.namespace, body)
            return await self.kube.call(
                f"get {what}", self.api.read_namespaced_lease, self.name, self.namespace
            )


def k8s_now(ts: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _unavailable(message: str) -> Admission:
    return Admission(False, "RateLimitUnavailable", f"{message}; the action is not taken uncounted", ())
