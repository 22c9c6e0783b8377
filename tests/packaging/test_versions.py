"""One version, written once (operator/memorywatch/__init__.py), followed by everything that names it.

We test these aspects: the package metadata reads it (pyproject has no version of its own); the chart's version
and appVersion equal it and the image tag defaults to appVersion; CHANGELOG.md has a section for it;
hack/build-image and hack/release name their artifacts after it; the Go version the README and hack/setup ask
for is the one the Go modules under hack/tools declare.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import tomllib

import yaml

import memorywatch

REPO = pathlib.Path(__file__).resolve().parents[2]
VERSION = memorywatch.__version__


def test_the_version_is_written_only_in_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    hatch = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["version"]
    assert hatch["path"] == "operator/memorywatch/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[-.]?(?:a|b|rc)\d+)?", VERSION), VERSION


def test_chart_and_image_tag_follow_the_package_version() -> None:
    chart = yaml.safe_load((REPO / "charts" / "memorywatch" / "Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts" / "memorywatch" / "values.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION), (
        f"charts/memorywatch/Chart.yaml says version {chart['version']}, appVersion {chart['appVersion']}; "
        f"the package is {VERSION}: set both to {VERSION}"
    )
    assert values["image"]["tag"] == "", "image.tag must stay empty so the tag is the chart's appVersion"


def test_changelog_has_a_section_for_the_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(VERSION)}\]?", text, re.MULTILINE), (
        f"CHANGELOG.md: no '## {VERSION}'"
    )


def test_build_scripts_name_artifacts_after_the_version() -> None:
    for script in ("build-image", "release"):
        out = subprocess.run([str(REPO / "hack" / script), "--print-version"], capture_output=True, text=True,
                             timeout=60, check=True)  # fmt: skip
        assert out.stdout.strip() == VERSION, f"hack/{script} --print-version said {out.stdout!r}"


def test_go_requirement_in_docs_matches_the_tool_modules() -> None:
    declared = {
        ".".join(re.search(r"^go (\d+)\.(\d+)", f.read_text(), re.MULTILINE).groups())  # type: ignore[union-attr]
        for f in (REPO / "hack" / "tools").glob("*/go.mod")
    }
    assert len(declared) == 1, f"hack/tools modules disagree on the Go version: {declared}"
    go = declared.pop()
    assert f"Go ≥ {go}" in (REPO / "README.md").read_text(), f"README.md must say 'Go ≥ {go}'"
    assert f"go {go} or newer" in (REPO / "hack" / "setup").read_text(), f"hack/setup must ask for go {go}"
