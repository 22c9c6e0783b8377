"""The sharding settings as `memorywatch run` flags (the chart's sharding.* values render them), their checks,
and the membership started from them (docs/scaling.md#sharding). Imported for `--help`: the Kubernetes client
is imported only when sharding starts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memorywatch.control.membership import MemberLeases
    from memorywatch.control.supervise import Supervisor
    from memorywatch.k8s import Kube

log = logging.getLogger("memorywatch")


def add_shard_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sharding across replicas (docs/scaling.md#sharding)")
    g.add_argument("--shard-members-lease-duration", type=float, default=0.0, metavar="SECONDS",
                   help="share the pods among the replicas that hold a member Lease of this duration (renewed "
                        "every third of it); 0 (the default) is off: this replica scrapes every pod. Needs "
                        "standalone kopf (no --peering). Helm sharding.enabled")  # fmt: skip
    g.add_argument("--shard-group", default="memorywatch",
                   help="the label value grouping one install's member Leases (Helm: the release's full name)")  # fmt: skip
    g.add_argument("--shard-namespace", default=None,
                   help="where the member Leases live (default: the operator's own namespace)")  # fmt: skip


def shard_problem(args: argparse.Namespace) -> str | None:
    """Why the sharding flags cannot work together with the others, or None."""
    duration = float(args.shard_members_lease_duration)
    if duration == 0:
        return None
    if duration < 2:
        return f"--shard-members-lease-duration must be 0 (off) or at least 2 seconds, not {duration:g}"
    if args.peering is not None:
        return (
            "--shard-members-lease-duration and --peering exclude each other: with kopf peering only one replica "
            "runs the handlers, so the others would own pods nobody scrapes; drop --peering (Helm: ha.enabled)"
        )
    return None


async def start_sharding(args: argparse.Namespace, kube: Kube, tasks: Supervisor) -> MemberLeases | None:
    """With --shard-members-lease-duration: this replica's member Lease, read once before kopf starts (so a
    replica does not begin by scraping every pod) and then renewed by a supervised task. None when off."""
    if not args.shard_members_lease_duration:
        return None
    from memorywatch.control.membership import MemberLeases

    shard = MemberLeases(
        kube,
        args.shard_namespace or os.environ.get("MEMORYWATCH_POD_NAMESPACE") or "default",
        kube.instance,
        group=args.shard_group,
        lease_seconds=float(args.shard_members_lease_duration),
    )
    try:
        await asyncio.wait_for(shard.refresh(), timeout=shard.lease_seconds)
    except TimeoutError:
        log.warning("shard membership: the first read took over %.0f s; starting alone", shard.lease_seconds)
    log.info("sharding on: %d live members, this replica is %s", len(shard.view.members), shard.identity)
    tasks.spawn("shard-membership", shard.run)
    return shard
