"""The chart's action guardrails: the limits reach the operator as flags, the pause value, the action ledger's
Lease grant, and RBAC that grants exactly the workload kinds the runner supports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chart_helpers import container, find, grants, only

from memorywatch.actions.guards import SUPPORTED_KINDS

Render = Callable[..., list[dict[str, Any]]]
ALL_ACTIONS = {
    "actions": {"evict": {"enabled": True}, "restart": {"enabled": True}, "scale": {"enabled": True}}
}


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_default_limits_reach_the_operator(render: Render) -> None:
    args = container(render())["args"]
    assert "--actions-paused" not in args
    assert flag(args, "--action-min-replicas") == "2"
    assert flag(args, "--action-max-unavailable-fraction") == "0.5"
    assert flag(args, "--action-rate-window") == "10m"
    assert flag(args, "--action-rate-cluster") == "10"
    assert flag(args, "--action-rate-namespace") == "3"


def test_pause_and_custom_limits(render: Render) -> None:
    values = {"actions": {"paused": True, "minReplicas": 3, "maxUnavailableFraction": 0.25,
                          "rateLimit": {"window": "1h", "cluster": 4, "perNamespace": 1}}}  # fmt: skip
    args = container(render(values))["args"]
    assert "--actions-paused" in args
    assert [flag(args, f) for f in ("--action-min-replicas", "--action-max-unavailable-fraction",
                                    "--action-rate-window", "--action-rate-cluster", "--action-rate-namespace")
            ] == ["3", "0.25", "1h", "4", "1"]  # fmt: skip


def test_the_flags_are_accepted_by_memorywatch_run(render: Render) -> None:
    import argparse

    from memorywatch.actions.config import add_action_arguments, limits_from_args, policy_from_args

    args = container(render({"actions": {"paused": True}}))["args"]
    guard_args = [
        a for i, a in enumerate(args) if a.startswith("--action") or args[i - 1].startswith("--action-")
    ]
    p = argparse.ArgumentParser()
    add_action_arguments(p)
    ns = p.parse_args(guard_args)
    assert policy_from_args(ns).paused and limits_from_args(ns).window_seconds == 600


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"actions": {"minReplicas": 0}}, "minReplicas"),
        ({"actions": {"maxUnavailableFraction": 0}}, "maxUnavailableFraction"),
        ({"actions": {"maxUnavailableFraction": 1.5}}, "maxUnavailableFraction"),
        ({"actions": {"rateLimit": {"window": "ten minutes"}}}, "window"),
        ({"actions": {"rateLimit": {"cluster": -1}}}, "cluster"),
    ],
)
def test_nonsense_limits_are_refused(
    helm_template: Callable[..., Any], values: dict[str, Any], text: str
) -> None:
    proc = helm_template(values)
    assert proc.returncode != 0 and text in proc.stderr, proc.stderr


def test_the_action_ledger_lease_is_granted_only_with_an_action(render: Render) -> None:
    assert not find(render(), "Role")
    docs = render(ALL_ACTIONS)
    role = only(docs, "Role", "mw-memorywatch-action-ledger")
    assert role["metadata"]["namespace"] == "memorywatch-system"
    by_name = [r for r in role["rules"] if r.get("resourceNames")]
    assert by_name == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "resourceNames": ["memorywatch-actions"], "verbs": ["get", "update"]}]  # fmt: skip
    assert grants(role["rules"]) == {
        ("coordination.k8s.io", "leases", v) for v in ("create", "get", "update")
    }
    binding = only(docs, "RoleBinding", "mw-memorywatch-action-ledger")
    assert binding["roleRef"]["name"] == "mw-memorywatch-action-ledger"


def test_namespaces_are_readable_for_the_opt_out_label(render: Render) -> None:
    cluster_role = only(render(), "ClusterRole", "mw-memorywatch")
    assert ("", "namespaces", "get") in grants(cluster_role["rules"])


def test_rbac_grants_exactly_the_kinds_the_runner_supports(render: Render) -> None:
    """RBAC and runner agree: a kind the runner refuses (UnsupportedWorkload) is never granted, and every kind
    it supports is, so no action path ends in a 403."""
    granted = grants(only(render(ALL_ACTIONS), "ClusterRole", "mw-memorywatch")["rules"])
    patched = {res for group, res, verb in granted if group == "apps" and verb == "patch"}
    kinds = set(SUPPORTED_KINDS["RolloutRestart"]) | set(SUPPORTED_KINDS["Scale"])
    assert patched == {k.lower() + "s" for k in kinds}
    readable = {res for group, res, verb in granted if group == "apps" and verb == "get"}
    for action_kinds in SUPPORTED_KINDS.values():
        assert {k.lower() + "s" for k in action_kinds} <= readable
    assert ("", "pods/eviction", "create") in granted


@pytest.mark.parametrize(
    "values",
    [
        {},
        ALL_ACTIONS,
        {"rbac": {"scope": "namespaces"}, "watchNamespaces": ["shop"]},
        {"ha": {"enabled": True}},
    ],
)
def test_no_install_grants_secrets_and_the_consent_role_is_bound_by_nobody(
    render: Render, values: dict[str, Any]
) -> None:
    docs = render(values)
    reader = only(docs, "ClusterRole", "mw-memorywatch-secret-reader")
    assert grants(reader["rules"]) == {("", "secrets", "get")}
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        if role["metadata"]["name"] == "mw-memorywatch-secret-reader":
            continue
        assert not any(res == "secrets" for _, res, _ in grants(role["rules"])), role["metadata"]["name"]
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        assert binding["roleRef"]["name"] != "mw-memorywatch-secret-reader"


def test_the_operator_knows_what_to_name_in_the_grant_command(render: Render) -> None:
    env = {e["name"]: e.get("value") for e in container(render())["env"]}
    assert env["MEMORYWATCH_SERVICE_ACCOUNT"] == "mw-memorywatch"
    assert env["MEMORYWATCH_SECRET_READER_ROLE"] == "mw-memorywatch-secret-reader"


def test_s3_policy_defaults_and_values_reach_the_operator(render: Render) -> None:
    args = container(render())["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--s3-allowed-endpoint"] == ["*.amazonaws.com"]
    assert "--s3-allowed-cidr" not in args and "--s3-operator-credential-bucket" not in args
    values = {"store": {"s3Policy": {"allowedEndpoints": ["minio.storage.svc.cluster.local:9000"],
                                     "allowedCIDRs": ["10.96.0.0/12"], "operatorCredentialBuckets": ["shared"]}}}  # fmt: skip
    args = container(render(values))["args"]
    assert flag(args, "--s3-allowed-endpoint") == "minio.storage.svc.cluster.local:9000"
    assert flag(args, "--s3-allowed-cidr") == "10.96.0.0/12"
    assert flag(args, "--s3-operator-credential-bucket") == "shared"
    none = container(render({"store": {"s3Policy": {"allowedEndpoints": []}}}))["args"]
    assert flag(none, "--s3-allowed-endpoint") == "", "an empty list allows no custom endpoint (AWS only)"


def test_s3_policy_flags_parse_as_rendered(render: Render) -> None:
    import argparse

    from memorywatch.store.policy import S3Policy, add_s3_policy_arguments, policy_from_args

    args = container(render({"store": {"s3Policy": {"allowedEndpoints": []}}}))["args"]
    picked = [a for i, a in enumerate(args) if a.startswith("--s3-") or args[i - 1].startswith("--s3-")]
    p = argparse.ArgumentParser()
    add_s3_policy_arguments(p)
    assert policy_from_args(p.parse_args(picked)) == S3Policy(allowed_endpoints=())


def test_retention_defaults_reach_the_operator_and_parse(render: Render) -> None:
    import argparse

    from memorywatch.store.quota import add_retention_arguments, limits_from_args
    from memorywatch.store.retention import Limits

    args = container(render())["args"]
    assert [flag(args, f) for f in ("--store-max-age", "--store-total-bytes", "--store-namespace-bytes")] == [
        "720h", "9Gi", "2Gi",
    ]  # fmt: skip
    picked = [a for i, a in enumerate(args) if a.startswith("--store-") or args[i - 1].startswith("--store-")]
    picked = [a for i, a in enumerate(picked) if not (a == "--store" or (i and picked[i - 1] == "--store"))]
    p = argparse.ArgumentParser()
    add_retention_arguments(p)
    assert limits_from_args(p.parse_args(picked)) == Limits(720 * 3600, 9 * 2**30, 2 * 2**30)
    off = container(render({"store": {"retention": {"maxAge": "", "totalBytes": "", "namespaceBytes": ""}}}))[
        "args"
    ]
    p2 = [a for i, a in enumerate(off) if a.startswith("--store-") or off[i - 1].startswith("--store-")]
    p2 = [a for i, a in enumerate(p2) if not (a == "--store" or (i and p2[i - 1] == "--store"))]
    assert limits_from_args(p.parse_args(p2)) == Limits()
