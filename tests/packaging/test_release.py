"""`hack/release`: one command for the wheel, the image archive, the packaged chart and the image's SBOM.

We test these aspects: every artifact is there and named after the package version; the packaged chart's
version and appVersion, the image's tag (its OCI reference annotation and Docker manifest.json), the wheel's
metadata and the SBOM's subject all say that version; the SBOM lists the Python packages installed in the
image at exactly the versions constraints.txt locks (memorywatch itself at the version) and the image's Debian
packages; SHA256SUMS matches the files.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import subprocess
import tarfile
import zipfile

import pytest
import yaml

import memorywatch

REPO = pathlib.Path(__file__).resolve().parents[2]
VERSION = memorywatch.__version__
DIST = REPO / "dist"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def release() -> pathlib.Path:
    proc = subprocess.run([str(REPO / "hack" / "release")], capture_output=True, text=True, timeout=3500,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, f"hack/release failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return DIST


def _locks() -> dict[str, str]:
    out = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return out


def test_artifacts_agree_on_the_version(release: pathlib.Path) -> None:
    names = {
        "wheel": f"memorywatch-{VERSION}-py3-none-any.whl",
        "image": f"memorywatch-{VERSION}.oci.tar",
        "chart": f"memorywatch-{VERSION}.tgz",
        "sbom": f"memorywatch-{VERSION}.sbom.cdx.json",
    }
    for name in names.values():
        assert (release / name).is_file(), f"dist/{name} missing"

    with tarfile.open(release / names["chart"]) as t:
        f = t.extractfile("memorywatch/Chart.yaml")
        assert f is not None
        chart = yaml.safe_load(f)
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)

    with tarfile.open(release / names["image"]) as t:
        index = json.load(t.extractfile("index.json"))  # type: ignore[arg-type]
        docker = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
    ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    assert ref.endswith(f":{VERSION}") and docker[0]["RepoTags"] == [ref]
    values = yaml.safe_load((REPO / "charts" / "memorywatch" / "values.yaml").read_text())
    assert ref == f"{values['image']['repository']}:{chart['appVersion']}", (
        "the chart's default image is this one"
    )

    with zipfile.ZipFile(release / names["wheel"]) as z:
        meta = z.read(f"memorywatch-{VERSION}.dist-info/METADATA").decode()
    assert f"\nVersion: {VERSION}\n" in meta

    sbom = json.loads((release / names["sbom"]).read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    subject = sbom["metadata"]["component"]
    assert subject["type"] == "container" and subject["version"] == VERSION
    assert subject["hashes"][0]["content"] == index["manifests"][0]["digest"].split(":")[1]
    python = {
        c["name"].lower().replace("_", "-"): c["version"]
        for c in sbom["components"]
        if c["purl"].startswith("pkg:pypi/")
    }
    assert python.pop("memorywatch") == VERSION
    locks = _locks()
    for must in ("kopf", "kubernetes", "boto3", "httpx", "pydantic", "aiohttp"):
        assert must in python, f"{must} missing from the SBOM"
    for name, version in python.items():
        assert locks.get(re.sub(r"[-_.]+", "-", name)) == version, (
            f"{name} {version} is not the locked version"
        )
    assert not {"pytest", "mypy", "ruff"} & set(python), "no development tools in the image"
    debs = {c["name"] for c in sbom["components"] if c["purl"].startswith("pkg:deb/debian/")}
    assert {"python3.11", "libc6"} <= debs

    sums = dict(reversed(line.split()) for line in (release / "SHA256SUMS").read_text().splitlines())
    for name in names.values():
        assert sums[name] == hashlib.sha256((release / name).read_bytes()).hexdigest(), name
