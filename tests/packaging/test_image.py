"""The operator image as hack/build-image writes it, read by the tools a team would use, and run.

We test these aspects: skopeo reads the archive both as an OCI archive and, through its Docker manifest.json,
as a docker-archive (what `docker load` and containerd's import read), and copies it; the config says user
65532:65532, entrypoint `memorywatch`, cmd `run`, workdir /var/lib/memorywatch; the image is named after the
package version and the chart's default repository; run chrooted as 65532 on a read-only root (the pod runner's
way), `memorywatch --version` prints the version and the operator's packages import; no pip, no compiler, no
tests in the image.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import yaml

import memorywatch

REPO = pathlib.Path(__file__).resolve().parents[2]
VERSION = memorywatch.__version__

sys.path.insert(0, str(REPO / "hack"))

from localcluster import images  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def archive() -> pathlib.Path:
    proc = subprocess.run([str(REPO / "hack" / "build-image")], capture_output=True, text=True, timeout=3500,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, f"hack/build-image failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    path = REPO / proc.stdout.strip().splitlines()[-1]
    assert path == REPO / "dist" / f"memorywatch-{VERSION}.oci.tar"
    return path


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def test_oci_and_docker_loaders_read_it(archive: pathlib.Path, tmp_path: pathlib.Path) -> None:
    oci = json.loads(skopeo("inspect", f"oci-archive:{archive}"))
    docker = json.loads(skopeo("inspect", f"docker-archive:{archive}"))
    assert oci["Digest"].startswith("sha256:") and docker["Layers"], (oci, docker)
    assert len(docker["Layers"]) == len(oci["Layers"])
    skopeo("copy", "--quiet", f"oci-archive:{archive}", f"dir:{tmp_path / 'copy'}")
    assert (tmp_path / "copy" / "manifest.json").exists()
    values = yaml.safe_load((REPO / "charts" / "memorywatch" / "values.yaml").read_text())
    docker_manifest = json.loads(subprocess.run(["tar", "-xOf", str(archive), "manifest.json"], capture_output=True,
                                                check=True).stdout)  # fmt: skip
    assert docker_manifest[0]["RepoTags"] == [f"{values['image']['repository']}:{VERSION}"]


def test_config_is_non_root_with_the_operator_entrypoint(archive: pathlib.Path) -> None:
    config = json.loads(skopeo("inspect", "--config", f"oci-archive:{archive}"))["config"]
    assert config["User"] == "65532:65532"
    assert (config["Entrypoint"], config["Cmd"], config["WorkingDir"]) == (
        ["memorywatch"],
        ["run"],
        "/var/lib/memorywatch",
    )
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]


def run_in_image(image: images.Image, tmp_path: pathlib.Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """As the pod runner runs a container: own mount namespace, read-only root, uid 65532, /tmp an empty dir."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o777, exist_ok=True)
    tmp.chmod(0o777)
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    env = dict(e.split("=", 1) for e in image.env)
    spec = {"rootfs": image.rootfs, "mountpoint": str(mnt), "mounts": [[str(tmp), "/tmp", False]],
            "uid": 65532, "gid": 65532, "argv": list(argv), "env": env, "working_dir": image.working_dir}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-m", "localcluster.chroot_exec",
         str(tmp_path / "spec.json")],
        capture_output=True, text=True, timeout=300, check=False, env={"PYTHONPATH": str(REPO / "hack")},
    )  # fmt: skip


def test_runs_as_65532_on_a_read_only_root(archive: pathlib.Path, tmp_path: pathlib.Path) -> None:
    image = images.load_archive(archive, tmp_path / "cluster")
    version = run_in_image(image, tmp_path, "memorywatch", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"memorywatch {VERSION}", version.stderr
    probe = run_in_image(image, tmp_path, "python", "-c", (
        "import os, kopf, kubernetes, boto3, aiohttp, memorywatch.operator_main\n"
        "print(os.getuid(), os.getgid())\n"
        "open('/tmp/ok', 'w').write('x')\n"
        "try:\n    open('/opt/venv/x', 'w')\nexcept OSError as e:\n    print(e.errno)\n"))  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["65532", "65532", "30"], "uid, gid, and EROFS writing outside /tmp"
    root = pathlib.Path(image.rootfs)
    assert not list(root.glob("opt/venv/bin/pip*")) and not list(
        root.glob("opt/venv/lib/python3*/site-packages/pip")
    )
    assert not list(root.glob("usr/bin/gcc*")) and not list(root.glob("usr/bin/cc"))
    assert not list(root.glob("opt/venv/lib/python3*/site-packages/pytest*")), "no test tools in the image"
