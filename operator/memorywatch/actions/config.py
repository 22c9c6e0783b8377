"""The operator-wide action limits as `memorywatch run` flags (the chart's actions.* values render them), and
the runner built from them."""

from __future__ import annotations

import argparse
import os

from memorywatch.actions.guards import ActionPolicy
from memorywatch.actions.ratelimit import RateLimits
from memorywatch.api.units import UnitError, parse_duration


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_action_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("action guardrails (docs/security.md#guardrails)")
    g.add_argument(
        "--actions-paused", action="store_true", help="carry out no action at all (Helm actions.paused)"
    )
    g.add_argument("--action-min-replicas", type=int, default=2,
                   help="never disrupt a workload with fewer ready replicas (Helm actions.minReplicas)")  # fmt: skip
    g.add_argument("--action-max-unavailable-fraction", type=float, default=0.5,
                   help="at most this fraction of a workload's replicas disrupted at once, at least 1 "
                        "(Helm actions.maxUnavailableFraction)")  # fmt: skip
    g.add_argument("--action-rate-window", type=_duration, default=600.0,
                   help="the sliding window of the action rate limits (Helm actions.rateLimit.window)")  # fmt: skip
    g.add_argument("--action-rate-cluster", type=int, default=10,
                   help="at most this many actions per window in the cluster (Helm actions.rateLimit.cluster)")  # fmt: skip
    g.add_argument("--action-rate-namespace", type=int, default=3,
                   help="at most this many actions per window per namespace (Helm actions.rateLimit.perNamespace)")  # fmt: skip
    g.add_argument("--action-ledger-namespace", default=None,
                   help="where the Lease counting actions lives (default: the operator's own namespace)")  # fmt: skip


def policy_from_args(args: argparse.Namespace) -> ActionPolicy:
    return ActionPolicy(
        paused=bool(args.actions_paused),
        min_replicas=int(args.action_min_replicas),
        max_unavailable_fraction=float(args.action_max_unavailable_fraction),
    )


def limits_from_args(args: argparse.Namespace) -> RateLimits:
    return RateLimits(
        window_seconds=float(args.action_rate_window),
        cluster_max=int(args.action_rate_cluster),
        namespace_max=int(args.action_rate_namespace),
    )


def ledger_namespace(args: argparse.Namespace) -> str:
    return str(args.action_ledger_namespace or os.environ.get("MEMORYWATCH_POD_NAMESPACE") or "default")
