"""Writes a MemoryWatch's status when several replicas share its pods (control/shards.py has the model): this
replica's share always, and the summary fields when this replica is the watch's summary writer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from memorywatch.control.ports import StatusWriter
from memorywatch.control.sharding import ShardView, owner
from memorywatch.control.shards import OPTIONAL_SHARE_FIELDS, summarize, summary_of, watch_key
from memorywatch.control.status import Condition, WatchFacts, comparable
from memorywatch.k8s import KubeError

log = logging.getLogger(__name__)


def _status(body: Mapping[str, Any]) -> Mapping[str, Any]:
    status = body.get("status")
    return status if isinstance(status, Mapping) else {}


def _shares(body: Mapping[str, Any]) -> dict[str, Any]:
    shards = _status(body).get("shards")
    return dict(shards) if isinstance(shards, Mapping) else {}


class ShardStatus:
    """One per controller with sharding on. `get_body` is the MemoryWatch as last seen (kopf keeps a daemon's
    body up to date), from which the other members' shares are read: no extra API read."""

    def __init__(
        self,
        kube: StatusWriter,
        namespace: str,
        name: str,
        view: Callable[[], ShardView],
        clock: Callable[[], float],
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.view = view
        self.clock = clock
        self.get_body: Callable[[], Mapping[str, Any]] = dict
        self._last_share: dict[str, Any] | None = None
        self._last_summary: dict[str, Any] | None = None
        self._conditions: dict[str, Condition] | None = None

    def status(self) -> Mapping[str, Any]:
        """The MemoryWatch's status as last seen."""
        return _status(self.get_body())

    def is_writer(self, view: ShardView) -> bool:
        return owner(view.members, watch_key(self.namespace, self.name)) == view.me

    async def write(self, share: dict[str, Any], own: WatchFacts, selector: str, force: bool) -> bool:
        """Write the share when it changed (or is missing from the MemoryWatch), then, as the summary writer,
        the summary when it changed. False when the share could not be written (a failed summary is only
        logged: the share holds this replica's write-ahead cooldowns, and the summary is tried again)."""
        view = self.view()
        body = self.get_body()
        shares = _shares(body)
        if force or share != self._last_share or shares.get(view.me) is None:
            cleared: dict[str, Any] = dict.fromkeys(OPTIONAL_SHARE_FIELDS)
            if not await self._patch({"shards": {view.me: cleared | share}}, "share"):
                return False
            self._last_share = share
        if not self.is_writer(view):
            self._conditions = (
                None  # another replica writes the summary; take its conditions if it comes back
            )
            return True
        shares[view.me] = share
        if self._conditions is None:
            self._conditions = {
                str(c.get("type")): Condition.from_dict(c)
                for c in _status(body).get("conditions") or []
                if isinstance(c, Mapping)
            }
        summary = summarize(
            shares, view.members, self._conditions, own, namespace=self.namespace, selector=selector,
            now=self.clock(),
        )  # fmt: skip
        same = comparable(summary.status)
        written = comparable(summary_of(_status(body)))
        if not summary.dropped and same == self._last_summary and same == written:
            return True
        patch: dict[str, Any] = dict(summary.status)
        if summary.dropped:
            patch["shards"] = {m: None for m in summary.dropped}  # a merge patch's null deletes the key
        if not await self._patch(patch, "summary"):
            return (
                True  # this replica's share (its write-ahead cooldowns) is written; the summary follows later
            )
        self._conditions = summary.conditions
        self._last_summary = same
        return True

    async def _patch(self, patch: Mapping[str, Any], what: str) -> bool:
        try:
            await self.kube.patch_status(self.namespace, self.name, patch)
        except KubeError as e:
            log.warning("%s/%s: could not write the status %s: %s", self.namespace, self.name, what, e)
            return False
        return True
