"""Fixtures for the chart tests: the real helm binary (found the way hack/build-tools installs it) and a renderer."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml

from support.tools import tool_path

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from chart_helpers import CHART, run_helm

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> pathlib.Path:
    """The pinned helm, built from the Go module proxy by hack/build-tools (a no-op when its cache is complete)."""
    return tool_path("HELM")


@pytest.fixture
def helm_template(
    helm: pathlib.Path, tmp_path: pathlib.Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """helm_template(values, *extra_args) -> the finished `helm template` process (rc, stdout, stderr)."""

    def template(values: Mapping[str, Any] | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(dict(values or {})))
        return run_helm(
            helm,
            "template",
            "mw",
            str(CHART),
            "--namespace",
            "memorywatch-system",
            "-f",
            str(values_file),
            *extra,
        )

    return template


@pytest.fixture
def render(helm_template: Callable[..., subprocess.CompletedProcess[str]]) -> Render:
    """render(values, *extra_args) -> the rendered manifests as dicts; fails the test if helm fails."""

    def _render(values: Mapping[str, Any] | None = None, *extra: str) -> list[dict[str, Any]]:
        proc = helm_template(values, *extra)
        if proc.returncode != 0:
            pytest.fail(f"helm template failed ({proc.returncode}):\n{proc.stderr}")
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return _render
