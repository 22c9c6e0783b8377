"""The chart's sharding values: off by default and with one replica (the install is exactly as before), on with
sharding.enabled and replicaCount > 1 (flags, no kopf peering, a Lease grant in the release namespace only)."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from chart_helpers import container, find, grants, only
from test_chart import render_notes

from memorywatch.control.shard_config import shard_problem
from memorywatch.operator_main import add_run_arguments

Render = Callable[..., list[dict[str, Any]]]
SHARDED = {"replicaCount": 3, "sharding": {"enabled": True}}
LEASE_VERBS = {"get", "list", "watch", "create", "update", "delete"}


def shard_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in find(docs, "Role") if d["metadata"]["name"].endswith("-shard-members")]


@pytest.mark.parametrize(
    "values", [{}, {"sharding": {"enabled": True}}], ids=["default", "enabled-1-replica"]
)
def test_one_replica_renders_no_sharding(render: Render, values: dict[str, Any]) -> None:
    docs = render(values)
    args = container(docs)["args"]
    assert not [a for a in args if a.startswith("--shard")]
    assert not shard_roles(docs)
    assert only(docs, "Deployment")["spec"]["replicas"] == 1


def test_sharding_passes_the_lease_flags_and_no_peering(render: Render) -> None:
    docs = render({**SHARDED, "sharding": {"enabled": True, "leaseDurationSeconds": 20}})
    args = container(docs)["args"]
    assert args[args.index("--shard-members-lease-duration") + 1] == "20"
    assert args[args.index("--shard-group") + 1] == "mw-memorywatch"
    assert "--peering" not in args
    assert only(docs, "Deployment")["spec"]["replicas"] == 3
    assert not find(docs, "CustomResourceDefinition", "kopfpeerings.kopf.dev")
    # what the chart renders is what `memorywatch run` accepts
    p = argparse.ArgumentParser()
    add_run_arguments(p)
    p.add_argument("--log-level")
    ns = p.parse_args(args[1:])
    assert ns.shard_members_lease_duration == 20.0 and shard_problem(ns) is None


def test_sharding_grants_leases_in_the_release_namespace_only(render: Render) -> None:
    docs = render(SHARDED)
    (role,) = shard_roles(docs)
    assert role["metadata"]["namespace"] == "memorywatch-system"
    assert grants(role["rules"]) == {("coordination.k8s.io", "leases", v) for v in LEASE_VERBS}
    (binding,) = [d for d in find(docs, "RoleBinding") if d["metadata"]["name"] == role["metadata"]["name"]]
    assert binding["metadata"]["namespace"] == "memorywatch-system"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    for cluster_role in find(docs, "ClusterRole"):
        assert not {g for g in grants(cluster_role["rules"]) if g[1] == "leases"}, cluster_role["metadata"]


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"replicaCount": 2}, "needs ha.enabled=true"),
        ({**SHARDED, "ha": {"enabled": True}}, "exclude each other"),
        ({**SHARDED, "sharding": {"enabled": True, "leaseDurationSeconds": 1}}, "leaseDurationSeconds"),
    ],
    ids=["replicas-without-either", "ha-and-sharding", "lease-too-short"],
)
def test_contradictory_values_fail_with_the_fix(
    helm_template: Callable[..., subprocess.CompletedProcess[str]], values: dict[str, Any], text: str
) -> None:
    proc = helm_template(values)
    assert proc.returncode != 0
    assert text in proc.stderr


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["--shard-members-lease-duration", "1"], "at least 2 seconds"),
        (["--shard-members-lease-duration", "15", "--peering", "mw"], "exclude each other"),
    ],
)
def test_memorywatch_run_refuses_contradictory_shard_flags(argv: list[str], text: str) -> None:
    p = argparse.ArgumentParser()
    add_run_arguments(p)
    problem = shard_problem(p.parse_args(argv))
    assert problem is not None and text in problem
    assert shard_problem(p.parse_args([])) is None
    assert shard_problem(p.parse_args(["--peering", "mw"])) is None


def test_notes_say_status_shows_one_share(helm: pathlib.Path, tmp_path: pathlib.Path) -> None:
    on = render_notes(helm, tmp_path / "on", "replicaCount=3", "sharding.enabled=true")
    assert "the 3 replicas share the watched pods" in on and "one replica's share at a time" in on
    assert "Sharding" not in render_notes(helm, tmp_path / "off", "sharding.enabled=true")
