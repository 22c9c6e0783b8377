"""The MemoryWatch CRD as a file: the contract's names and defaults, a documented and bounded schema, and the
chart shipping exactly the same CRD."""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from chart_helpers import CAPTURE_CRD_SOURCE, CRD_CHART_COPY, CRD_SOURCE, REPO, only

Render = Callable[..., list[dict[str, Any]]]
Schema = dict[str, Any]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_SOURCE.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    return versions[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> Schema:
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def nodes(schema: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every schema node under `schema` with its dotted path (array items as `[]`, map values as `{}`)."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def at(root: Schema, path: str) -> Schema:
    node = root
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_names_scope_subresource_and_columns(crd: dict[str, Any], version: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "memorywatches.memorywatch.io"
    assert spec["group"] == "memorywatch.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "MemoryWatch"
    assert spec["names"]["shortNames"] == ["mw"]
    assert spec["names"]["categories"] == ["memorywatch"]
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Targets", "Breaching", "Last Capture", "Ready", "Age", "Message"]
    assert columns["Targets"]["jsonPath"] == ".status.targets"
    assert columns["Breaching"]["jsonPath"] == ".status.breaching"
    assert columns["Last Capture"] == {
        **columns["Last Capture"],
        "type": "date",
        "jsonPath": ".status.captures[0].time",
    }
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Message"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].message'
    assert columns["Message"]["priority"] == 1
    assert all(c.get("priority", 0) == 0 for name, c in columns.items() if name != "Message")


# The contract (docs: product.md). Renaming any of these breaks users; this list only grows.
CONTRACT_PATHS = [
    "spec.selector.matchLabels",
    "spec.selector.matchExpressions",
    "spec.endpoint.port",
    "spec.endpoint.path",
    "spec.endpoint.scheme",
    "spec.endpoint.access",
    "spec.endpoint.tls.caSecretRef.name",
    "spec.endpoint.tls.caSecretRef.key",
    "spec.endpoint.tls.insecureSkipVerify",
    "spec.endpoint.tls.serverName",
    "spec.endpoint.bearerTokenSecretRef.name",
    "spec.endpoint.bearerTokenSecretRef.key",
    "spec.endpoint.metricsPath",
    "spec.endpoint.allowInsecureBearerToken",
    "spec.interval",
    "spec.rules.[].name",
    "spec.rules.[].kind",
    "spec.rules.[].window",
    "spec.rules.[].minGrowth",
    "spec.rules.[].for",
    "spec.rules.[].expression",
    "spec.rules.[].horizon",
    "spec.rules.[].warmup",
    "spec.rules.[].cooldown",
    "spec.capture.profiles",
    "spec.capture.cooldown",
    "spec.capture.cpuSeconds",
    "spec.capture.maxProfileBytes",
    "spec.capture.retention.maxAge",
    "spec.capture.retention.maxBytes",
    "spec.capture.storage.s3.bucket",
    "spec.capture.storage.s3.prefix",
    "spec.capture.storage.s3.endpoint",
    "spec.capture.storage.s3.region",
    "spec.capture.storage.s3.credentialsSecretRef.name",
    "spec.capture.storage.s3.credentialsSecretRef.accessKeyIdKey",
    "spec.capture.storage.s3.credentialsSecretRef.secretAccessKeyKey",
    "spec.capture.storage.s3.forcePathStyle",
    "spec.action.type",
    "spec.action.scale.step",
    "spec.action.scale.maxReplicas",
    "spec.action.cooldown",
    "spec.action.dryRun",
    "spec.suspend",
    "status.observedGeneration",
    "status.conditions.[].type",
    "status.conditions.[].status",
    "status.conditions.[].observedGeneration",
    "status.conditions.[].lastTransitionTime",
    "status.conditions.[].reason",
    "status.conditions.[].message",
    "status.targets",
    "status.breaching",
    "status.captures.[].time",
    "status.captures.[].pod",
    "status.captures.[].rule",
    "status.captures.[].location",
    "status.captures.[].summary",
    "status.cooldowns.[].pod",
    "status.cooldowns.[].rule",
    "status.cooldowns.[].until",
    "status.lastActions.[].time",
    "status.lastActions.[].pod",
    "status.lastActions.[].workload",
    "status.lastActions.[].action",
    "status.lastActions.[].dryRun",
    "status.lastActions.[].result",
    "status.lastActions.[].message",
]


@pytest.mark.parametrize("path", CONTRACT_PATHS)
def test_contract_field_exists(root: Schema, path: str) -> None:
    at(root, path)


@pytest.mark.parametrize(
    ("path", "default"),
    [
        ("spec.endpoint.path", "/debug/pprof"),
        ("spec.endpoint.scheme", "http"),
        ("spec.endpoint.access", "Direct"),
        ("spec.endpoint.metricsPath", "/metrics"),
        ("spec.endpoint.tls.insecureSkipVerify", False),
        ("spec.endpoint.allowInsecureBearerToken", False),
        ("spec.interval", "30s"),
        ("spec.capture", {}),
        ("spec.capture.profiles", ["heap", "goroutine", "goroutine-stacks"]),
        ("spec.capture.cooldown", "30m"),
        ("spec.capture.cpuSeconds", 10),
        ("spec.capture.storage", {}),
        ("spec.capture.storage.s3.credentialsSecretRef.accessKeyIdKey", "AWS_ACCESS_KEY_ID"),
        ("spec.capture.storage.s3.credentialsSecretRef.secretAccessKeyKey", "AWS_SECRET_ACCESS_KEY"),
        ("spec.capture.storage.s3.forcePathStyle", True),
        ("spec.action", {}),
        ("spec.action.type", "None"),
        ("spec.action.scale.step", 1),
        ("spec.action.cooldown", "1h"),
        ("spec.action.dryRun", False),
        ("spec.suspend", False),
    ],
)
def test_explicit_defaults(root: Schema, path: str, default: Any) -> None:
    assert at(root, path)["default"] == default


def test_rules_have_no_default_so_omitted_means_the_built_in_set(root: Schema) -> None:
    assert "default" not in at(root, "spec.rules")


def test_enums(root: Schema) -> None:
    assert at(root, "spec.rules.[].kind")["enum"] == [
        "GoroutineGrowth", "HeapGrowth", "FinalizerBacklog", "NonHeapGrowth", "MemoryLimit", "Threshold",
    ]  # fmt: skip
    assert at(root, "spec.action.type")["enum"] == ["None", "EvictPod", "RolloutRestart", "Scale"]
    assert at(root, "spec.endpoint.scheme")["enum"] == ["http", "https"]
    assert at(root, "spec.endpoint.access")["enum"] == ["Direct", "PortForward"]
    assert set(at(root, "spec.capture.profiles.[]")["enum"]) == {
        "heap", "goroutine", "goroutine-stacks", "allocs", "block", "mutex", "threadcreate", "cpu",
    }  # fmt: skip
    assert at(root, "status.conditions.[].status")["enum"] == ["True", "False", "Unknown"]


def test_every_field_is_described_for_kubectl_explain(root: Schema) -> None:
    undocumented = [
        path
        for section in ("spec", "status")
        for path, node in nodes(root["properties"][section], section)
        if not node.get("description")
    ]
    assert not undocumented, f"fields without a description: {undocumented}"


def test_every_string_number_and_list_in_spec_is_bounded(root: Schema) -> None:
    problems: list[str] = []
    for path, node in nodes(root["properties"]["spec"], "spec"):
        kind = node.get("type")
        is_string = kind == "string" or node.get("x-kubernetes-int-or-string")
        if is_string and "maxLength" not in node and "enum" not in node:
            problems.append(f"{path}: string without maxLength")
        if kind == "integer" and ("minimum" not in node or "maximum" not in node):
            problems.append(f"{path}: integer without minimum and maximum")
        if kind == "array":
            if "maxItems" not in node:
                problems.append(f"{path}: list without maxItems")
            if "x-kubernetes-list-type" not in node:
                problems.append(f"{path}: list without x-kubernetes-list-type")
        if (
            kind == "object"
            and isinstance(node.get("additionalProperties"), dict)
            and "maxProperties" not in node
        ):
            problems.append(f"{path}: map without maxProperties")
        if node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: preserve-unknown-fields turns validation off")
    assert not problems, "\n".join(problems)


def test_status_strings_and_lists_are_bounded(root: Schema) -> None:
    for path, node in nodes(root["properties"]["status"], "status"):
        if node.get("type") == "string":
            assert "maxLength" in node or "enum" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node and "x-kubernetes-list-type" in node, path
    conditions = at(root, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert at(root, "status.captures")["maxItems"] == 20
    assert at(root, "spec.rules")["maxItems"] == 20
    assert at(root, "spec.rules")["x-kubernetes-list-map-keys"] == ["name"]
    assert at(root, "spec.rules.[].expression")["maxLength"] == 1024


def test_cel_rule_messages_say_must(root: Schema) -> None:
    rules = [
        (path, rule)
        for section in ("spec", "status")
        for path, node in nodes(root["properties"][section], section)
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 15
    for path, rule in rules:
        assert " must" in rule["message"], f"{path}: {rule['message']!r}"


@pytest.mark.parametrize("source", [CRD_SOURCE, CAPTURE_CRD_SOURCE], ids=lambda p: p.name)
def test_chart_copy_is_byte_identical_to_the_source(source: pathlib.Path) -> None:
    copy = CRD_CHART_COPY.parent / source.name
    assert copy.read_bytes() == source.read_bytes(), "run hack/gen-crd"
    check = subprocess.run(
        [str(REPO / "hack" / "gen-crd"), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("source", [CRD_SOURCE, CAPTURE_CRD_SOURCE], ids=lambda p: p.name)
def test_chart_renders_the_same_crd(render: Render, source: pathlib.Path) -> None:
    crd = yaml.safe_load(source.read_text())
    rendered = only(render(), "CustomResourceDefinition", crd["metadata"]["name"])
    # The chart adds its labels and annotations; everything else is the source, untouched.
    assert {k: v for k, v in rendered.items() if k != "metadata"} == {
        k: v for k, v in crd.items() if k != "metadata"
    }
    assert rendered["metadata"]["name"] == crd["metadata"]["name"]
    assert rendered["metadata"]["labels"].items() >= crd["metadata"]["labels"].items()
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_memorycapture_crd_names_columns_and_a_bounded_documented_schema() -> None:
    crd = yaml.safe_load(CAPTURE_CRD_SOURCE.read_text())
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "memorycaptures.memorywatch.io"
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (
        "memorywatch.io",
        "Namespaced",
        "MemoryCapture",
    )
    # The category `memorywatch` would shadow MemoryWatch's singular: `kubectl delete memorywatch NAME` failed
    # with "you must specify only one resource" (found by the e2e).
    assert "memorywatch" not in spec["names"].get("categories", [])
    assert spec["names"]["shortNames"] == ["mcap"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"] if not c.get("priority")}
    assert columns == {
        "Pod": ".spec.pod",
        "Rule": ".spec.rule",
        "Size": ".spec.size",
        "Action": ".status.action.result",
        "Age": ".metadata.creationTimestamp",
    }
    root = version["schema"]["openAPIV3Schema"]
    problems = []
    for section in ("spec", "status"):
        for path, node in nodes(root["properties"][section], section):
            kind = node.get("type")
            if not node.get("description"):
                problems.append(f"{path}: no description")
            if kind == "string" and "maxLength" not in node and "enum" not in node:
                problems.append(f"{path}: string without maxLength")
            if kind == "integer" and ("minimum" not in node or "maximum" not in node):
                problems.append(f"{path}: integer without minimum and maximum")
            if kind == "array" and ("maxItems" not in node or "x-kubernetes-list-type" not in node):
                problems.append(f"{path}: list without maxItems and a list type")
            if node.get("x-kubernetes-preserve-unknown-fields"):
                problems.append(f"{path}: preserve-unknown-fields turns validation off")
    assert not problems, "\n".join(problems)
