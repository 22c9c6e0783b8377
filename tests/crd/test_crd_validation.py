"""The MemoryWatch CRD on a real kube-apiserver: what users get back from `kubectl apply` — defaults filled in,
CEL cross-field rules enforced with messages naming the field, unknown fields pruned or refused, and the
printer columns and `kubectl explain` text."""

from __future__ import annotations

import copy
import json
import pathlib
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from support.tools import tool_path

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "memorywatch.io_memorywatches.yaml"
GROUP, VERSION, PLURAL = "memorywatch.io", "v1alpha1", "memorywatches"

VALID: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "MemoryWatch",
    "metadata": {"name": "checkout"},
    "spec": {
        "selector": {"matchLabels": {"app": "checkout"}},
        "endpoint": {"port": "pprof"},
        "rules": [
            {"name": "goroutine-leak", "kind": "GoroutineGrowth", "window": "15m", "minGrowth": "2000"},
            {"name": "heap-growth", "kind": "HeapGrowth", "window": "30m", "minGrowth": "256Mi"},
            {"name": "near-limit", "kind": "MemoryLimit", "horizon": "30m"},
            {
                "name": "big-sys",
                "kind": "Threshold",
                "expression": "memstats.Sys > 4 * 1024 * 1024 * 1024",
                "for": "5m",
            },
        ],
    },
}


def with_spec(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    body["spec"].update(changes)
    return body


@pytest.fixture(scope="module")
def crd_installed(cluster: Any) -> None:
    """The CRD applied server-side and established. It is left installed: other suites share the cluster."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=memorywatch-tests",
        "-f",
        str(CRD_FILE),
    )
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/memorywatches.memorywatch.io", "--timeout=60s"
    )


@pytest.fixture
def create(cluster: Any, namespace: str, crd_installed: None) -> Callable[..., dict[str, Any]]:
    """create(body, strict=False) -> the stored object; raises ApiException when the API server refuses it."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(cluster.api_client())

    def _create(body: dict[str, Any], strict: bool = False) -> dict[str, Any]:
        kwargs = {"field_validation": "Strict"} if strict else {}
        deadline = time.monotonic() + 30
        while True:
            try:
                return api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, **kwargs)  # type: ignore[no-any-return]
            except ApiException as error:
                # Just after the CRD is established, discovery may not serve the resource for a moment.
                if error.status == 404 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise

    return _create


def refusal(
    create: Callable[..., dict[str, Any]], body: dict[str, Any], strict: bool = False, status: int = 422
) -> str:
    """The API server's message refusing `body` with `status` (the test fails if it is accepted)."""
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as caught:
        create(body, strict=strict)
    assert caught.value.status == status, caught.value.body
    return str(json.loads(caught.value.body)["message"])


def test_valid_memorywatch_is_accepted_with_defaults_filled_in(create: Callable[..., dict[str, Any]]) -> None:
    spec = create(copy.deepcopy(VALID))["spec"]
    assert spec["endpoint"] == {
        "port": "pprof", "path": "/debug/pprof", "scheme": "http", "access": "Direct", "metricsPath": "/metrics",
        "allowInsecureBearerToken": False,
    }  # fmt: skip
    assert spec["interval"] == "30s"
    assert spec["suspend"] is False
    assert spec["capture"] == {
        "profiles": ["heap", "goroutine", "goroutine-stacks"],
        "cooldown": "30m",
        "cpuSeconds": 10,
        "maxProfileBytes": "64Mi",
        "storage": {},
    }
    assert spec["action"] == {"type": "None", "cooldown": "1h", "dryRun": False}
    assert spec["rules"] == VALID["spec"]["rules"]


def test_s3_storage_defaults(create: Callable[..., dict[str, Any]]) -> None:
    body = with_spec(
        capture={"storage": {"s3": {"bucket": "evidence", "credentialsSecretRef": {"name": "s3"}}}}
    )
    s3 = create(body)["spec"]["capture"]["storage"]["s3"]
    assert s3["forcePathStyle"] is True
    assert s3["credentialsSecretRef"] == {
        "name": "s3", "accessKeyIdKey": "AWS_ACCESS_KEY_ID", "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY",
    }  # fmt: skip


def test_interval_below_one_second_is_refused_naming_the_field(create: Callable[..., dict[str, Any]]) -> None:
    message = refusal(create, with_spec(interval="500ms"))
    assert "spec.interval" in message and "interval must be at least 1s" in message
    assert create(with_spec(interval="1s"))["spec"]["interval"] == "1s"


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [
        (
            {"rules": [{"name": "t", "kind": "Threshold"}]},
            "spec.rules[0].expression",
            "expression must be set when kind is Threshold",
        ),
        (
            {"rules": [{"name": "h", "kind": "HeapGrowth", "expression": "true"}]},
            "spec.rules[0].expression",
            "must not be set unless kind is Threshold",
        ),
        (
            {"rules": [{"name": "h", "kind": "HeapGrowth", "horizon": "30m"}]},
            "spec.rules[0].horizon",
            "must not be set unless kind is MemoryLimit",
        ),
        (
            {"rules": [{"name": "h", "kind": "HeapGrowth", "window": "5s"}]},
            "spec.rules[0].window",
            "window must be between 10s and 24h",
        ),
        (
            {"rules": [{"name": "h", "kind": "HeapGrowth"}, {"name": "h", "kind": "GoroutineGrowth"}]},
            "spec.rules[1]",
            "Duplicate value",
        ),
        (
            {"action": {"type": "Scale"}},
            "spec.action.scale",
            "scale.maxReplicas must be set when type is Scale",
        ),
        (
            {"action": {"type": "Scale", "scale": {"step": 2}}},
            "spec.action.scale",
            "scale.maxReplicas must be set when type is Scale",
        ),
        (
            {"endpoint": {"port": 6060, "tls": {"insecureSkipVerify": True}}},
            "spec.endpoint.tls",
            "tls must not be set unless scheme is https",
        ),
        ({"selector": {}}, "spec.selector", "selector must not be empty"),
        (
            {"selector": {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}},
            "spec.selector",
            "selector must contain at least one positive match",
        ),
        (
            {"selector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}},
            "spec.selector",
            "selector must contain at least one positive match",
        ),
        ({"action": {"type": "EvictPod", "cooldown": "0"}}, "spec.action.cooldown", "must be at least 1m"),
        (
            {"capture": {"retention": {"maxAge": "10m"}}},
            "spec.capture.retention.maxAge",
            "must be at least 1h",
        ),
        ({"action": {"type": "EvictPod", "cooldown": "59s"}}, "spec.action.cooldown", "must be at least 1m"),
        (
            {"endpoint": {"port": 6060, "bearerTokenSecretRef": {"name": "t"}}},
            "spec.endpoint.bearerTokenSecretRef",
            "bearerTokenSecretRef must go with scheme https",
        ),
        ({"selector": {"matchLabels": {}}}, "spec.selector", "selector must not be empty"),
        ({"endpoint": {"port": 0}}, "spec.endpoint.port", "port must be a number from 1 to 65535"),
        ({"endpoint": {"port": "Not_A_Port"}}, "spec.endpoint.port", "port must be a number from 1 to 65535"),
        ({"endpoint": {"port": 6060, "path": "debug/pprof"}}, "spec.endpoint.path", "should match"),
        ({"interval": "30 seconds"}, "spec.interval", "should match"),
        ({"capture": {"profiles": ["heap", "trace"]}}, "spec.capture.profiles[1]", "Unsupported value"),
        ({"capture": {"cpuSeconds": 120}}, "spec.capture.cpuSeconds", "less than or equal to 60"),
        (
            {"capture": {"storage": {"s3": {"bucket": "Bad_Bucket"}}}},
            "spec.capture.storage.s3.bucket",
            "should match",
        ),
    ],
)
def test_invalid_spec_is_refused_with_a_message_naming_the_field(
    create: Callable[..., dict[str, Any]], spec: dict[str, Any], field: str, text: str
) -> None:
    message = refusal(create, with_spec(**spec))
    assert field in message, message
    assert text in message, message


def test_tls_is_accepted_with_https(create: Callable[..., dict[str, Any]]) -> None:
    endpoint = {
        "port": 8443,
        "scheme": "https",
        "tls": {"caSecretRef": {"name": "pprof-ca"}, "serverName": "checkout"},
    }
    stored = create(with_spec(endpoint=endpoint))["spec"]["endpoint"]
    assert stored["tls"] == {
        "caSecretRef": {"name": "pprof-ca", "key": "ca.crt"},
        "insecureSkipVerify": False,
        "serverName": "checkout",
    }


def test_unknown_fields_are_pruned_or_refused(create: Callable[..., dict[str, Any]]) -> None:
    body = with_spec(intervall="5s")
    body["spec"]["endpoint"]["prot"] = 6060
    message = refusal(create, body, strict=True, status=400)  # strict decoding: BadRequest
    assert 'unknown field "spec.intervall"' in message and 'unknown field "spec.endpoint.prot"' in message
    stored = create(body)["spec"]
    assert "intervall" not in stored and "prot" not in stored["endpoint"]
    assert stored["interval"] == "30s"


def test_status_is_a_subresource_and_columns_show_it(
    cluster: Any, namespace: str, create: Callable[..., dict[str, Any]]
) -> None:
    from kubernetes import client

    create(copy.deepcopy(VALID))
    api = client.CustomObjectsApi(cluster.api_client())
    status = {
        "observedGeneration": 1,
        "targets": 3,
        "breaching": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Watching",
                "message": "3 pods watched",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
                "observedGeneration": 1,
            },
        ],
        "captures": [
            {
                "time": "2026-01-02T03:04:05Z",
                "pod": "checkout-1",
                "rule": "heap-growth",
                "location": "file:///x",
            }
        ],
    }
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "checkout", {"status": status}
    )
    table = cluster.kubectl("get", "mw", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert table[0].split() == ["NAME", "TARGETS", "BREACHING", "LAST", "CAPTURE", "READY", "AGE", "MESSAGE"]
    name, targets, breaching, last_capture, ready, _age, *message = table[1].split()
    assert (name, targets, breaching, ready) == ("checkout", "3", "1", "True")
    assert re.fullmatch(r"\d+[smhdy].*", last_capture), last_capture  # a date column prints as an age
    assert " ".join(message) == "3 pods watched"
    assert "MESSAGE" not in cluster.kubectl("get", "mw", "-n", namespace).stdout  # priority 1: -o wide only
    # A status written through the main resource is ignored: only the status subresource changes it.
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "checkout", {"status": {"targets": 99}}
    )
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "checkout")
    assert stored["status"]["targets"] == 3


def test_kubectl_explain_describes_fields(cluster: Any, crd_installed: None) -> None:
    deadline = time.monotonic() + 30
    while True:
        proc = cluster.kubectl("explain", "memorywatch.spec.capture.storage.s3.forcePathStyle", check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert proc.returncode == 0, proc.stderr
    assert "Address the bucket as <endpoint>/<bucket>" in " ".join(proc.stdout.split())
    port = cluster.kubectl("explain", "memorywatch.spec.endpoint.port").stdout
    assert "the name of a container port" in " ".join(port.split())


@pytest.fixture(scope="module")
def helm_binary() -> pathlib.Path:
    """The pinned helm, located the way hack/build-tools installs it (a no-op build when its cache is complete)."""
    return tool_path("HELM")


@pytest.mark.parametrize(
    "settings",
    [
        [],
        [
            "rbac.scope=namespaces",
            "ha.enabled=true",
            "replicaCount=2",
            "actions.evict.enabled=true",
            "actions.restart.enabled=true",
            "actions.scale.enabled=true",
            "networkPolicy.enabled=true",
            "store.s3.bucket=evidence",
            "store.s3.credentialsSecret=s3",
            "store.persistence.enabled=false",
        ],
    ],
    ids=["defaults", "namespaces-ha-everything"],
)
def test_rendered_chart_is_accepted_by_the_api_server(
    cluster: Any, namespace: str, helm_binary: pathlib.Path, settings: list[str]
) -> None:
    """Every object the chart renders passes the real API server's validation (server-side dry run)."""
    args = [a for s in [*settings, f"watchNamespaces={{{namespace}}}"] for a in ("--set", s)]
    rendered = subprocess.run(
        [str(helm_binary), "template", "mw", str(REPO / "charts" / "memorywatch"), "--namespace", namespace, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    # kopf peering objects are post-install hooks: their CRD is only served once the release is installed.
    docs = [
        d
        for d in yaml.safe_load_all(rendered.stdout)
        if d and d["kind"] not in {"ClusterKopfPeering", "KopfPeering"}
    ]
    assert len(docs) >= 8
    applied = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts", "--field-manager=memorywatch-tests", "-f", "-",
        input=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == len(docs), applied.stdout


def test_guardrail_fields_accept_what_they_should(create: Callable[..., dict[str, Any]]) -> None:
    mixed = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]},
                                  {"key": "canary", "operator": "DoesNotExist"}]}  # fmt: skip
    assert create(with_spec(selector=mixed))["spec"]["selector"] == mixed
    body = with_spec(endpoint={"port": 6060, "bearerTokenSecretRef": {"name": "t"}, "allowInsecureBearerToken": True},
                     action={"type": "EvictPod", "cooldown": "1m"})  # fmt: skip
    body["metadata"]["name"] = "explicit"
    spec = create(body)["spec"]
    assert spec["endpoint"]["allowInsecureBearerToken"] is True and spec["action"]["cooldown"] == "1m"
