"""Paths and helpers shared by the chart tests (conftest.py puts this directory on sys.path)."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "memorywatch"
CRD_SOURCE = REPO / "crds" / "memorywatch.io_memorywatches.yaml"
CAPTURE_CRD_SOURCE = REPO / "crds" / "memorywatch.io_memorycaptures.yaml"
CRD_CHART_COPY = CHART / "files" / "crds" / "memorywatch.io_memorywatches.yaml"


def run_helm(helm: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


def find(
    docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The rendered objects of a kind (optionally with a name and namespace)."""
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = only(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every combination a list of RBAC rules grants."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }
