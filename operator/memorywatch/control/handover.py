"""Capture cooldowns that survive a handover between replicas (sharding, docs/scaling.md#sharding).

When a replica starts following a pod another replica may have followed (a takeover, a join, its own restart),
its engine must not capture that pod again while a capture taken by any replica is still in its rule's cooldown.
Status is no record of that (another replica may have overwritten it); the MemoryCaptures are: each capture
creates one, in the cluster, with the pod, the rule and the time. So before a batch of new pods is scraped, the
watch's MemoryCaptures are listed once (one list per batch, never per sample), and each new pod starts with the
cooldowns they imply.

A failed list keeps the new pods unfollowed (no scrape, so no capture) and is tried again at the next reconcile.
The wait is bounded: once the watch's longest cooldown has passed since the first failed attempt, no capture
taken before the pods came here can still be in cooldown, so they are followed without the list (and that is
logged). Everything read from a MemoryCapture is hostile input: an entry without a readable pod, rule or time
is ignored."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from memorywatch.api.capture_object import LABEL_WATCH_UID
from memorywatch.api.spec import WatchSpec
from memorywatch.control.ports import CaptureApi, Clock
from memorywatch.control.status import parse_iso
from memorywatch.k8s import KubeError, NotFoundError

log = logging.getLogger(__name__)

#: Cooldowns: pod -> rule -> until (epoch seconds).
PodCooldowns = dict[str, dict[str, float]]


def latest_captures(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(pod, rule) -> the time of the newest MemoryCapture of that pod and rule; unreadable entries ignored."""
    newest: dict[tuple[str, str], float] = {}
    for obj in objects:
        spec = obj.get("spec") if isinstance(obj, Mapping) else None
        if not isinstance(spec, Mapping):
            continue
        pod, rule, when = spec.get("pod"), spec.get("rule"), spec.get("time")
        if not isinstance(pod, str) or not isinstance(rule, str) or not pod or not rule:
            continue
        t = parse_iso(when) if isinstance(when, str) else None
        if t is None:
            continue
        key = (pod, rule)
        newest[key] = max(t, newest.get(key, t))
    return newest


def rule_cooldowns(spec: WatchSpec) -> dict[str, float]:
    """Each rule's cooldown in seconds (its own, else the watch's capture.cooldown)."""
    default = spec.capture.cooldown_seconds
    return {r.name: default if r.cooldown_seconds is None else r.cooldown_seconds for r in spec.rules}


def cooldowns_for(
    pods: Iterable[str],
    captures: Mapping[tuple[str, str], float],
    cooldown_seconds: Mapping[str, float],
    now: float,
) -> PodCooldowns:
    """For each of `pods`, the rules still in cooldown after the newest capture of that pod and rule: rule ->
    until. Rules no longer in the spec are left out (the engine would forget them anyway)."""
    wanted = set(pods)
    out: PodCooldowns = {}
    for (pod, rule), when in captures.items():
        seconds = cooldown_seconds.get(rule)
        if pod not in wanted or seconds is None or when + seconds <= now:
            continue
        out.setdefault(pod, {})[rule] = when + seconds
    return out


def share_cooldowns(status: Mapping[str, Any], pods: Iterable[str], now: float) -> PodCooldowns:
    """The capture cooldowns other replicas wrote ahead into their shares (status.shards.*.cooldowns) for `pods`:
    a breach is written there before its capture starts, so this covers a capture whose MemoryCapture does not
    exist yet. Hostile input: unreadable entries are ignored."""
    wanted = set(pods)
    out: PodCooldowns = {}
    shards = status.get("shards")
    for share in shards.values() if isinstance(shards, Mapping) else ():
        entries = share.get("cooldowns") if isinstance(share, Mapping) else None
        for c in entries if isinstance(entries, list) else ():
            if not isinstance(c, Mapping) or c.get("type", "Capture") != "Capture":
                continue
            pod, rule, when = c.get("pod"), c.get("rule"), c.get("until")
            until = parse_iso(when) if isinstance(when, str) else None
            if (
                pod in wanted
                and isinstance(pod, str)
                and isinstance(rule, str)
                and until is not None
                and until > now
            ):
                rules = out.setdefault(pod, {})
                rules[rule] = max(until, rules.get(rule, until))
    return out


def longest_cooldown(spec: WatchSpec) -> float:
    return max(rule_cooldowns(spec).values(), default=spec.capture.cooldown_seconds)


class Handover:
    """One per controller with sharding on: `learn` answers which new pods may be followed, with their cooldowns."""

    def __init__(
        self, kube: CaptureApi, namespace: str, watch_uid: str, clock: Clock, *, grace_seconds: float = 0.0
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.watch_uid = watch_uid
        self.clock = clock
        #: How long a pod moving from a live replica is held back: that replica's next membership read and
        #: reconcile, after which it no longer scrapes the pod (and any breach it had is in status and a capture).
        self.grace_seconds = grace_seconds
        #: Pods moving from a live replica, and since when they are held back.
        self.held: dict[str, float] = {}
        #: Pods waiting for a successful read, and since when (the bound runs per pod).
        self.waiting: dict[str, float] = {}
        self.lists = 0

    async def learn(
        self, spec: WatchSpec, pods: Sequence[str], from_live: Collection[str] = ()
    ) -> PodCooldowns:
        """The pods of `pods` that may be followed now, each with its cooldowns (rule -> until) from the watch's
        MemoryCaptures (one list for the whole batch). Pods in `from_live` (their previous owner is still live:
        a join) are held back for `grace_seconds` first. When the list fails, only the pods that have waited the
        watch's longest cooldown are in the answer (with no cooldown: none from before can still run)."""
        now = self.clock()
        for pod in from_live:
            self.held.setdefault(pod, now)
        pods = [p for p in pods if p not in self.held or now - self.held[p] >= self.grace_seconds]
        if len(self.held) > 10 * len(pods) + 1000:  # pods that went away while held
            self.held.clear()
        if not pods:
            return {}
        for pod in pods:
            self.held.pop(pod, None)
        self.lists += 1
        try:
            objects = await self.kube.list_captures(self.namespace, f"{LABEL_WATCH_UID}={self.watch_uid}")
        except NotFoundError:
            # The MemoryCapture CRD is not installed (an install that applied only the MemoryWatch CRD): no capture is recorded
            # there, so there is nothing to wait for; the cooldowns in the other replicas' shares still count.
            objects = []
        except KubeError as e:
            bound = longest_cooldown(spec)
            ready: PodCooldowns = {}
            for pod in pods:
                since = self.waiting.setdefault(pod, now)
                if now - since >= bound:
                    ready[pod] = {}
                    del self.waiting[pod]
            log.warning(
                "%s: cannot read the MemoryCaptures before following %d pod(s) new to this replica (%s); "
                "%d wait for the read (at most %.0f s each), %d waited that long and are followed",
                self.namespace, len(pods), e, len(pods) - len(ready), bound, len(ready),
            )  # fmt: skip
            return ready
        for pod in pods:
            self.waiting.pop(pod, None)
        if len(self.waiting) > 10 * len(pods) + 1000:  # pods that went away while waiting
            self.waiting.clear()
        found = cooldowns_for(pods, latest_captures(objects), rule_cooldowns(spec), now)
        return {pod: found.get(pod, {}) for pod in pods}
