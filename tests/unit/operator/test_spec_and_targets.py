"""Reading a MemoryWatch spec and turning pods into targets: defaults, selector semantics, clear errors."""

from __future__ import annotations

import pytest

from memorywatch.api.spec import SpecError, parse_spec
from memorywatch.rules.model import RuleKind
from memorywatch.targets import pod_info, pod_url, resolve_port

POD = {
    "metadata": {
        "name": "checkout-7d9f-x",
        "namespace": "shop",
        "uid": "u1",
        "labels": {"app": "checkout", "tier": "web"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "checkout-7d9f", "controller": True}],
    },
    "spec": {
        "containers": [
            {
                "name": "app",
                "ports": [{"name": "pprof", "containerPort": 6060}, {"containerPort": 8080}],
                "resources": {"limits": {"memory": "512Mi"}},
            }
        ]
    },
    "status": {"phase": "Running", "podIP": "10.1.2.3"},
}


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec({"selector": {"matchLabels": {"app": "checkout"}}, "endpoint": {"port": "pprof"}})
    assert spec.interval_seconds == 30
    assert (
        spec.endpoint.path == "/debug/pprof"
        and spec.endpoint.scheme == "http"
        and spec.endpoint.access == "Direct"
    )
    assert spec.capture.profiles == ("heap", "goroutine", "goroutine-stacks")
    assert (
        spec.capture.cooldown_seconds == 1800
        and spec.action.type == "None"
        and spec.action.cooldown_seconds == 3600
    )
    assert {r.kind for r in spec.rules} >= {
        RuleKind.GOROUTINE_GROWTH,
        RuleKind.HEAP_GROWTH,
        RuleKind.MEMORY_LIMIT,
    }


def test_every_problem_is_named_with_its_field() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(
            {
                "selector": {},
                "endpoint": {},
                "interval": "soon",
                "rules": [{"name": "x", "kind": "HeapGrowth", "window": "15x"}],
                "action": {"type": "Scale"},
            }
        )
    text = "\n".join(err.value.messages)
    for field in (
        "spec.selector",
        "spec.endpoint.port",
        "spec.interval",
        "spec.rules[0].window",
        "spec.action.scale.maxReplicas",
    ):
        assert field in text


def test_selector_semantics() -> None:
    spec = parse_spec(
        {
            "selector": {
                "matchLabels": {"app": "checkout"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["web", "api"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
            "endpoint": {"port": 6060},
        }
    )
    assert spec.selector.matches({"app": "checkout", "tier": "web"})
    assert not spec.selector.matches({"app": "checkout", "tier": "batch"})
    assert not spec.selector.matches({"app": "checkout", "tier": "web", "canary": "1"})
    assert not spec.selector.matches({"app": "payments", "tier": "web"})


def test_pod_to_target() -> None:
    pod = pod_info(POD)
    assert (
        pod.running and pod.owner == ("ReplicaSet", "checkout-7d9f") and pod.memory_limit_bytes == 512 * 2**20
    )
    named = parse_spec({"selector": {"matchLabels": {"a": "b"}}, "endpoint": {"port": "pprof"}})
    assert resolve_port(named.endpoint, pod) == 6060
    missing = parse_spec({"selector": {"matchLabels": {"a": "b"}}, "endpoint": {"port": "debug"}})
    assert resolve_port(missing.endpoint, pod) is None
    numbered = parse_spec(
        {"selector": {"matchLabels": {"a": "b"}}, "endpoint": {"port": 7070, "scheme": "https"}}
    )
    assert pod_url(numbered.endpoint, "10.1.2.3", 7070) == "https://10.1.2.3:7070"
    assert pod_url(numbered.endpoint, "fd00::1", 7070) == "https://[fd00::1]:7070"


def test_terminating_or_ipless_pods_are_not_targets() -> None:
    assert not pod_info(
        {**POD, "metadata": {**POD["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    ).running
    assert not pod_info({**POD, "status": {"phase": "Pending"}}).running
