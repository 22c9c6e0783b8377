"""The chart's capture-files API (fileServer): the APIService with the chart's own CA, its Service and TLS Secret,
the standard delegation bindings, the operator's flags, port and mount, the viewer role's second group, the
NetworkPolicy's port, and all of it left out by default (`fileServer.enabled: false`)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from chart_helpers import container, find, only

Render = Callable[..., list[dict[str, Any]]]


ON = {"fileServer": {"enabled": True}}


def test_the_apiservice_points_at_the_operator_with_the_charts_ca(render: Render) -> None:
    docs = render(ON)
    api = only(docs, "APIService")
    assert api["metadata"]["name"] == "v1alpha1.files.memorywatch.io"
    spec = api["spec"]
    assert (spec["group"], spec["version"], spec["insecureSkipTLSVerify"]) == (
        "files.memorywatch.io",
        "v1alpha1",
        False,
    )
    assert spec["service"] == {"name": "mw-memorywatch-files", "namespace": "memorywatch-system", "port": 443}
    secret = only(docs, "Secret", "mw-memorywatch-files-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert spec["caBundle"] == secret["data"]["ca.crt"]
    # The serving certificate is for the name the API server checks: <service>.<namespace>.svc, signed by that CA.
    cert = base64.b64decode(secret["data"]["tls.crt"])
    verify = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=cert,
                            capture_output=True, check=True).stdout.decode()  # fmt: skip
    assert "DNS:mw-memorywatch-files.memorywatch-system.svc" in verify, verify
    service = only(docs, "Service", "mw-memorywatch-files")
    assert service["spec"]["ports"] == [
        {"name": "files", "port": 443, "targetPort": "files", "protocol": "TCP"}
    ]


def test_the_operator_serves_it_with_delegated_auth(render: Render) -> None:
    docs = render(ON)
    c = container(docs)
    i = c["args"].index("--files-port")
    assert c["args"][i + 1] == "8443"
    assert {"name": "files", "containerPort": 8443, "protocol": "TCP"} in c["ports"]
    assert {"name": "files-tls", "mountPath": "/etc/memorywatch/files-tls", "readOnly": True} in c[
        "volumeMounts"
    ]
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "files-tls", "secret": {"secretName": "mw-memorywatch-files-tls"}} in pod["volumes"]
    sa = {"kind": "ServiceAccount", "name": "mw-memorywatch", "namespace": "memorywatch-system"}
    crb = [b for b in find(docs, "ClusterRoleBinding") if b["roleRef"]["name"] == "system:auth-delegator"]
    assert len(crb) == 1 and crb[0]["subjects"] == [sa]
    rb = only(docs, "RoleBinding")
    assert rb["metadata"]["namespace"] == "kube-system"
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "extension-apiserver-authentication-reader"}  # fmt: skip
    assert rb["subjects"] == [sa]


def test_capture_viewers_may_get_the_files(render: Render) -> None:
    viewer = only(render(), "ClusterRole", "mw-memorywatch-capture-viewer")
    rules = {
        (g, r): sorted(rule["verbs"])
        for rule in viewer["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules[("memorywatch.io", "memorycaptures")] == ["get", "list", "watch"]
    assert rules[("files.memorywatch.io", "memorycaptures")] == ["get"]


def test_network_policy_admits_the_api_server(render: Render) -> None:
    policy = only(render(ON | {"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert "files" in ports


@pytest.mark.parametrize("values", [{}, {"fileServer": {"enabled": False}}], ids=["default", "disabled"])
def test_off_by_default_and_disabled_leaves_it_all_out(render: Render, values: dict[str, Any]) -> None:
    docs = render(values | {"networkPolicy": {"enabled": True}})
    assert not find(docs, "APIService") and not find(docs, "RoleBinding")
    assert not find(docs, "Secret", "mw-memorywatch-files-tls") and not find(
        docs, "Service", "mw-memorywatch-files"
    )
    c = container(docs)
    assert "--files-port" not in c["args"] and "files" not in {p["name"] for p in c["ports"]}
    assert not [
        b for b in find(docs, "ClusterRoleBinding") if b["roleRef"]["name"] == "system:auth-delegator"
    ]
    policy = only(docs, "NetworkPolicy")
    assert "files" not in [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
