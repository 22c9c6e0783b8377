"""The Helm chart, rendered by the real helm: lint, the default install, both RBAC scopes, the action toggles,
the stores, and values that must be refused."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from chart_helpers import CHART, container, find, grants, only, run_helm

Template = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]

# What each action toggle must add to the operator's RBAC, and nothing else may grant.
ACTION_GRANTS: dict[str, set[tuple[str, str, str]]] = {
    "evict": {("", "pods/eviction", "create")},
    "restart": {("apps", "deployments", "patch"), ("apps", "statefulsets", "patch")},
    "scale": {
        ("apps", "deployments", "patch"),
        ("apps", "statefulsets", "patch"),
        ("autoscaling", "horizontalpodautoscalers", "get"),
        ("autoscaling", "horizontalpodautoscalers", "list"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
    },
}
# Always needed where MemoryWatches live, whatever the toggles.
BASE_GRANTS = {
    ("memorywatch.io", "memorywatches", "get"),
    ("memorywatch.io", "memorywatches", "list"),
    ("memorywatch.io", "memorywatches", "watch"),
    ("memorywatch.io", "memorywatches", "patch"),
    ("memorywatch.io", "memorywatches/status", "patch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
    ("apps", "replicasets", "get"),
    ("apps", "deployments", "get"),
    ("apps", "statefulsets", "get"),
}
NEVER_GRANTED = {"pods/exec", "pods/proxy", "*"}


def operator_grants(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Everything the operator's own (Cluster)Roles grant, aggregated roles excluded."""
    roles = [
        d for d in docs if d["kind"] in {"ClusterRole", "Role"} and d["metadata"]["name"] == "mw-memorywatch"
    ]
    assert roles, "no operator role rendered"
    return set().union(*(grants(r["rules"]) for r in roles))


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    return container(docs)["args"]  # type: ignore[no-any-return]


def test_helm_lint_strict_is_clean(helm: pathlib.Path) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_lint_strict_is_clean_for_namespaced_ha_s3(helm: pathlib.Path) -> None:
    proc = run_helm(
        helm, "lint", "--strict", str(CHART),
        "--set", "rbac.scope=namespaces", "--set", "watchNamespaces={shop,pay}", "--set", "ha.enabled=true",
        "--set", "replicaCount=2", "--set", "store.s3.bucket=captures", "--set", "networkPolicy.enabled=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout, proc.stdout


def test_default_install_runs_one_hardened_operator_for_all_namespaces(render: Render) -> None:
    docs = render()
    deployment = only(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"} in c["env"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    assert mounts["/var/lib/memorywatch/captures"] == "captures"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    assert volumes["captures"]["persistentVolumeClaim"]["claimName"] == "mw-memorywatch-captures"

    assert c["args"][:11] == [
        "run", "--store", "/var/lib/memorywatch/captures", "--health-port", "8080", "--metrics-port", "9090",
        "--log-format", "json", "--log-level", "info",
    ]  # fmt: skip
    assert "--all-namespaces" in c["args"] and "--namespace" not in c["args"]
    assert not any(a.startswith("--default-s3") for a in c["args"])

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}  # the capture-files API is off by default (fileServer)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["resources"]["requests"]["memory"] and c["resources"]["requests"]["cpu"]
    assert c["resources"]["limits"]["memory"]
    assert c["image"] == "ghcr.io/memorywatch/memorywatch:0.1.0"

    pvc = only(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert only(docs, "Service")["spec"]["ports"][0]["targetPort"] == "metrics"
    for absent in (
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "Role",
        "RoleBinding",
        "APIService",
    ):
        assert not find(docs, absent), absent


def test_default_rbac_is_cluster_wide_and_least_privilege(render: Render) -> None:
    docs = render()
    granted = operator_grants(docs)
    assert granted >= BASE_GRANTS
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "watch") in granted
    assert ("", "namespaces", "list") in granted
    assert ("", "pods/portforward", "create") in granted  # access.portForward.enabled defaults to true
    assert ("", "pods/portforward", "get") in granted  # the WebSocket protocol is authorized as get
    assert ("metrics.k8s.io", "pods", "list") in granted
    for toggle in ACTION_GRANTS.values():
        assert not granted & toggle
    assert not {resource for _, resource, _ in granted} & NEVER_GRANTED
    # delete only for the operator's own records: a MemoryCapture whose files retention pruned.
    deletes = {(g, r) for g, r, verb in granted if verb in {"*", "delete", "deletecollection"}}
    assert deletes == {("memorywatch.io", "memorycaptures")}
    assert ("memorywatch.io", "memorycaptures", "deletecollection") not in granted
    # Pods are only ever read; Secrets not even that (a namespace grants them by consent: test_chart_guardrails).
    assert {verb for _, res, verb in granted if res == "pods"} == {"get", "list", "watch"}
    assert not {verb for _, res, verb in granted if res == "secrets"}
    binding = only(docs, "ClusterRoleBinding", "mw-memorywatch")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mw-memorywatch", "namespace": "memorywatch-system"}
    ]


@pytest.mark.parametrize("action", sorted(ACTION_GRANTS))
@pytest.mark.parametrize("scope", ["cluster", "namespaces"])
def test_action_verbs_appear_only_when_the_action_is_enabled(render: Render, action: str, scope: str) -> None:
    values: dict[str, Any] = {"rbac": {"scope": scope}, "watchNamespaces": ["shop"]}
    disabled = operator_grants(render(values))
    enabled = operator_grants(render({**values, "actions": {action: {"enabled": True}}}))
    assert enabled - disabled == ACTION_GRANTS[action]
    assert not disabled & ACTION_GRANTS[action]


def test_port_forward_and_metrics_api_grants_follow_their_toggles(render: Render) -> None:
    granted = operator_grants(
        render({"access": {"portForward": {"enabled": False}}, "metricsApi": {"enabled": False}})
    )
    assert ("", "pods/portforward", "create") not in granted
    assert not any(group == "metrics.k8s.io" for group, _, _ in granted)


def test_namespaces_scope_grants_workload_access_only_in_the_watched_namespaces(render: Render) -> None:
    docs = render({"rbac": {"scope": "namespaces"}, "watchNamespaces": ["shop", "pay", "shop"]})
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["pay", "shop"]
    for role in roles:
        assert grants(role["rules"]) >= BASE_GRANTS
    bindings = [b for b in find(docs, "RoleBinding") if b["metadata"]["namespace"] != "kube-system"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["pay", "shop"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == "memorywatch-system"
    # The only cluster-wide grants are what kopf itself needs: CRD discovery and namespaces.
    cluster_role = only(docs, "ClusterRole", "mw-memorywatch")
    assert {resource for _, resource, _ in grants(cluster_role["rules"])} == {
        "customresourcedefinitions",
        "namespaces",
    }
    args = args_of(docs)
    assert "--all-namespaces" not in args
    assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == ["pay", "shop"]


def test_namespaces_scope_without_namespaces_is_refused(helm_template: Template) -> None:
    proc = helm_template({"rbac": {"scope": "namespaces"}})
    assert proc.returncode != 0
    assert "watchNamespaces must list at least one namespace" in proc.stderr


def test_s3_default_store_passes_flags_and_credentials_only_through_the_environment(render: Render) -> None:
    docs = render(
        {
            "store": {
                "persistence": {"enabled": False},
                "s3": {
                    "bucket": "mw-captures",
                    "prefix": "prod",
                    "endpoint": "https://s3.example.internal",
                    "region": "eu-west-1",
                    "credentialsSecret": "s3-creds",
                },
            }
        }
    )
    args = args_of(docs)
    flags = {
        args[i]: args[i + 1]
        for i, a in enumerate(args[:-1])
        if a.startswith("--default-s3-") and not args[i + 1].startswith("--")
    }
    assert flags == {
        "--default-s3-bucket": "mw-captures",
        "--default-s3-prefix": "prod",
        "--default-s3-endpoint": "https://s3.example.internal",
        "--default-s3-region": "eu-west-1",
    }
    assert "--default-s3-force-path-style" in args
    env = {e["name"]: e for e in container(docs)["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": name}
    assert not any("s3-creds" in a for a in args)
    assert not find(docs, "PersistentVolumeClaim")


def test_persistence_disabled_keeps_captures_in_an_emptydir(render: Render) -> None:
    docs = render({"store": {"persistence": {"enabled": False}}})
    assert not find(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["captures"] == {"name": "captures", "emptyDir": {}}


def test_existing_claim_is_mounted_and_no_claim_is_created(render: Render) -> None:
    docs = render({"store": {"persistence": {"existingClaim": "evidence"}}})
    assert not find(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["captures"]["persistentVolumeClaim"] == {"claimName": "evidence"}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"image": {"tga": "v1"}}, "'tga' not allowed"),
        ({"rbac": {"scoped": "cluster"}}, "'scoped' not allowed"),
        ({"actions": {"evict": {"enable": True}}}, "'enable' not allowed"),
        ({"replicas": 2}, "'replicas' not allowed"),
        ({"rbac": {"scope": "namespace"}}, "/rbac/scope"),
        ({"logging": {"format": "xml"}}, "/logging/format"),
    ],
)
def test_mistyped_or_invalid_values_fail_schema_validation(
    helm_template: Template, values: dict[str, Any], complaint: str
) -> None:
    proc = helm_template(values)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert complaint in proc.stderr


def test_values_schema_forbids_unknown_keys_everywhere_and_describes_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} allows unknown keys"
            for key, child in node["properties"].items():
                assert child.get("description"), f"{path}.{key} has no description"
                walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "values")

    # Every key in values.yaml is declared (so the defaults themselves validate and are documented).
    def keys(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        for key, value in values.items():
            assert key in node.get("properties", {}), f"{path}.{key} is missing from values.schema.json"
            if isinstance(value, dict) and "properties" in node["properties"][key]:
                keys(value, node["properties"][key], f"{path}.{key}")

    keys(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "values")


def test_more_than_one_replica_needs_kopf_peering(helm_template: Template, render: Render) -> None:
    proc = helm_template({"replicaCount": 2})
    assert proc.returncode != 0 and "needs ha.enabled=true" in proc.stderr

    docs = render({"replicaCount": 2, "ha": {"enabled": True}})
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    args = args_of(docs)
    assert args[args.index("--peering") + 1] == "memorywatch"
    crds = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds
    peering = only(docs, "ClusterKopfPeering")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in operator_grants(docs)


CRD_NAMES = ("memorywatches.memorywatch.io", "memorycaptures.memorywatch.io")


@pytest.mark.parametrize("name", CRD_NAMES)
def test_crd_toggles(render: Render, name: str) -> None:
    crd = only(render(), "CustomResourceDefinition", name)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    crd = only(
        render({"crds": {"keep": False, "annotations": {"team": "platform"}}}),
        "CustomResourceDefinition",
        name,
    )
    assert crd["metadata"]["annotations"] == {"team": "platform"}
    assert not find(render({"crds": {"install": False}}), "CustomResourceDefinition")


@pytest.mark.parametrize("scope", ["cluster", "namespaces"])
def test_memorycapture_grants_are_the_same_least_privilege_in_both_scopes(render: Render, scope: str) -> None:
    docs = render({"rbac": {"scope": scope}, "watchNamespaces": ["shop"]})
    roles = (
        find(docs, "Role", "mw-memorywatch")
        if scope == "namespaces"
        else [only(docs, "ClusterRole", "mw-memorywatch")]
    )
    for role in roles:
        granted = {(r, v) for g, r, v in grants(role["rules"]) if r.startswith("memorycaptures")}
        assert granted == {
            *(("memorycaptures", v) for v in ("create", "get", "list", "watch", "delete", "patch")),
            ("memorycaptures/status", "get"),
            ("memorycaptures/status", "patch"),
        }
    if scope == "namespaces":
        cluster = grants(only(docs, "ClusterRole", "mw-memorywatch")["rules"])
        assert not {r for _, r, _ in cluster if r.startswith("memorycaptures")}


def test_capture_viewer_aggregates_read_only_access_to_view(render: Render) -> None:
    viewer = only(render(), "ClusterRole", "mw-memorywatch-capture-viewer")
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert grants(viewer["rules"]) == {
        ("memorywatch.io", r, v)
        for r in ("memorycaptures", "memorycaptures/status")
        for v in ("get", "list", "watch")
    } | {("files.memorywatch.io", "memorycaptures", "get")}  # their files, through the capture-files API
    assert not find(
        render({"rbac": {"aggregateClusterRoles": False}}), "ClusterRole", "mw-memorywatch-capture-viewer"
    )
    # Named after the release, like every cluster-scoped object of the chart: a second release does not collide.
    assert find(render({"fullnameOverride": "other"}), "ClusterRole", "other-capture-viewer")


def test_aggregated_roles_let_view_read_and_edit_write_memorywatches(render: Render) -> None:
    docs = render()
    view = only(docs, "ClusterRole", "mw-memorywatch-view")
    edit = only(docs, "ClusterRole", "mw-memorywatch-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert ("memorywatch.io", "memorywatches", "list") in grants(view["rules"])
    assert ("memorywatch.io", "memorywatches", "create") in grants(edit["rules"])
    assert not find(render({"rbac": {"aggregateClusterRoles": False}}), "ClusterRole", "mw-memorywatch-view")


def test_service_monitor_only_when_prometheus_operator_is_installed(render: Render) -> None:
    values = {"serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kps"}}}
    assert not find(render(values), "ServiceMonitor")
    monitor = only(
        render(values, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"), "ServiceMonitor"
    )
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_network_policy_allows_api_server_targets_and_s3(render: Render) -> None:
    policy = only(
        render({"networkPolicy": {"enabled": True, "egress": {"apiServer": {"cidrs": ["10.0.0.1/32"]}}}}),
        "NetworkPolicy",
    )
    egress = policy["spec"]["egress"]
    ports = [{p["port"] for p in rule["ports"]} for rule in egress]
    assert {53} in ports and {443, 6443} in ports and {6060} in ports
    api_rule = next(rule for rule in egress if {p["port"] for p in rule["ports"]} == {443, 6443})
    assert api_rule["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]


def test_image_digest_and_scheduling_values(render: Render) -> None:
    digest = "sha256:" + "a" * 64
    docs = render(
        {
            "image": {"tag": "1.2.3", "digest": digest},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
            "logging": {"format": "text", "level": "debug"},
        }
    )
    assert container(docs)["image"] == f"ghcr.io/memorywatch/memorywatch:1.2.3@{digest}"
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "infra"
    assert pod["priorityClassName"] == "system-cluster-critical"
    args = args_of(docs)
    assert args[args.index("--log-format") + 1] == "text"
    assert args[args.index("--log-level") + 1] == "debug"


def render_notes(helm: pathlib.Path, tmp_path: pathlib.Path, *set_values: str) -> str:
    """NOTES.txt as `helm install` would print it. `helm template` skips NOTES.txt and `helm install --dry-run`
    needs a reachable cluster, so a copy of the chart renders the same file through a ConfigMap."""
    chart = tmp_path / "memorywatch"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes_probe.tpl").write_text(
        '{{- define "notes.probe" -}}\n' + notes + "{{- end }}\n"
    )
    (chart / "templates" / "notes-probe.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include "notes.probe" . | quote }}\n'
    )
    args = [a for value in set_values for a in ("--set", value)]
    proc = run_helm(
        helm,
        "template",
        "mw",
        str(chart),
        "--namespace",
        "ops",
        "--show-only",
        "templates/notes-probe.yaml",
        *args,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["data"]["notes"]  # type: ignore[no-any-return]


def test_notes_say_how_to_start_and_where_captures_go(helm: pathlib.Path, tmp_path: pathlib.Path) -> None:
    notes = render_notes(helm, tmp_path / "pvc")
    assert "kind: MemoryWatch" in notes and "kubectl apply" in notes
    assert "the PVC mw-memorywatch-captures" in notes
    assert "/var/lib/memorywatch/captures/<namespace>/<memorywatch>/<pod>/<time>-<rule>/" in notes
    assert "Actions (EvictPod, RolloutRestart, Scale) are not permitted" in notes
    notes = render_notes(helm, tmp_path / "s3", "store.s3.bucket=evidence", "store.s3.prefix=prod")
    assert "s3://evidence/prod/<namespace>/<memorywatch>/<pod>/" in notes
    notes = render_notes(helm, tmp_path / "tmp", "store.persistence.enabled=false")
    assert "WARNING, they are lost" in notes


def test_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()

    def undocumented(values: dict[str, Any], prefix: str) -> list[str]:
        out: list[str] = []
        for key, value in values.items():
            path = f"{prefix}{key}"
            if f"`{path}`" in readme:
                continue  # documented as a whole (e.g. resources)
            out += undocumented(value, f"{path}.") if isinstance(value, dict) and value else [path]
        return out

    missing = undocumented(yaml.safe_load((CHART / "values.yaml").read_text()), "")
    assert not missing, f"charts/memorywatch/README.md does not list: {missing}"
