"""The pod runner's image support (hack/localcluster/images.py) on archives built here, byte by byte.

We test these aspects: an OCI layout archive is unpacked layer over layer (whiteouts and opaque directories
applied, device nodes skipped, no path escapes the root) into a directory per manifest digest, once; the image's
references, entrypoint, cmd, env, user and working directory are recorded per cluster and found by reference or
digest; the user is the container's securityContext, else the pod's, else the image's (names looked up in the
image's /etc/passwd); volumes get the kubelet's permissions; a tar that is not an image is refused by name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import stat
import sys
import tarfile
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "hack"))

from localcluster import images

REF = "ghcr.io/example/app:1.2.3"


def _tar(entries: list[tuple[str, bytes | None, int]]) -> bytes:
    """(name, data or None for a directory, type) -> an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = bytes([kind]) if isinstance(kind, int) else kind
            if data is not None:
                info.size = len(data)
            info.mode = 0o755 if info.isdir() else 0o644
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _blob(files: dict[str, bytes], data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    files["blobs/sha256/" + digest.split(":")[1]] = data
    return {"digest": digest, "size": len(data)}


def make_archive(path: pathlib.Path, layers: list[bytes], config: dict[str, Any], ref: str = REF) -> str:
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    layer_descs = [_blob(files, layer) for layer in layers]
    cfg = _blob(files, json.dumps({"config": config}).encode())
    manifest = _blob(files, json.dumps({"schemaVersion": 2, "config": cfg, "layers": layer_descs}).encode())
    manifest["annotations"] = {"org.opencontainers.image.ref.name": ref}
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode()
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return str(manifest["digest"])


@pytest.fixture
def cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv("MEMORYWATCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


DIR, FILE, CHR = tarfile.DIRTYPE[0], tarfile.REGTYPE[0], tarfile.CHRTYPE[0]
BASE = _tar([
    ("etc", None, DIR), ("etc/passwd", b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/false\n", FILE),
    ("etc/group", b"root:x:0:\napps:x:1001:\n", FILE),
    ("opt", None, DIR), ("opt/old", None, DIR), ("opt/old/a", b"a", FILE), ("gone.txt", b"x", FILE),
    ("dev", None, DIR), ("dev/null", None, CHR), ("../escape", b"no", FILE),
])  # fmt: skip
TOP = _tar([("opt", None, DIR), ("opt/old", None, DIR), ("opt/old/.wh..wh..opq", b"", FILE),
            ("opt/old/b", b"b", FILE), (".wh.gone.txt", b"", FILE), ("app", b"#!/bin/sh\n", FILE)])  # fmt: skip
CONFIG = {"Entrypoint": ["/app"], "Cmd": ["run"], "Env": ["PATH=/usr/bin"], "User": "65532:65532",
          "WorkingDir": "/work"}  # fmt: skip


def test_layers_are_unpacked_in_order_once_per_digest(tmp_path: pathlib.Path, cache: pathlib.Path) -> None:
    digest = make_archive(tmp_path / "img.tar", [BASE, TOP], CONFIG)
    image = images.load_archive(tmp_path / "img.tar", tmp_path / "cluster")
    root = pathlib.Path(image.rootfs)
    assert root == cache / "images" / "rootfs" / digest.replace(":", "-")
    assert stat.S_IMODE(root.stat().st_mode) == 0o755, "the image's user must be able to enter its root"
    assert sorted(p.name for p in (root / "opt" / "old").iterdir()) == ["b"], "opaque dir dropped a"
    assert not (root / "gone.txt").exists() and (root / "app").read_bytes() == b"#!/bin/sh\n"
    assert not (root / "dev" / "null").exists() and not (root / "escape").exists()
    assert not list((cache / "images").rglob("escape"))
    assert (image.entrypoint, image.cmd, image.env, image.user, image.working_dir) == (
        ("/app",),
        ("run",),
        ("PATH=/usr/bin",),
        "65532:65532",
        "/work",
    )
    stamp = (root / ".complete").stat().st_mtime_ns
    (root / "marker").write_text("kept")
    again = images.load_archive(tmp_path / "img.tar", tmp_path / "other-cluster")
    assert again.rootfs == image.rootfs and (root / "marker").exists(), "a known digest is not unpacked again"
    assert (root / ".complete").stat().st_mtime_ns == stamp


def test_loaded_images_are_found_by_reference_or_digest(tmp_path: pathlib.Path, cache: pathlib.Path) -> None:
    digest = make_archive(tmp_path / "img.tar", [BASE], CONFIG)
    images.load_archive(tmp_path / "img.tar", tmp_path / "cluster")
    found = images.lookup(tmp_path / "cluster", REF)
    assert found is not None and found.digest == digest
    assert images.lookup(tmp_path / "cluster", f"ghcr.io/example/app@{digest}") == found
    assert images.lookup(tmp_path / "cluster", "ghcr.io/example/app:other") is None
    assert images.lookup(tmp_path / "elsewhere", REF) is None, "images are loaded per cluster"


def test_a_tar_that_is_not_an_image_is_refused(tmp_path: pathlib.Path, cache: pathlib.Path) -> None:
    (tmp_path / "x.tar").write_bytes(_tar([("hello", b"hi", FILE)]))
    with pytest.raises(images.ImageError, match="not an OCI image layout"):
        images.load_archive(tmp_path / "x.tar", tmp_path / "cluster")
    make_archive(tmp_path / "noref.tar", [BASE], CONFIG, ref="")
    with pytest.raises(images.ImageError, match="no reference annotation"):
        images.load_archive(tmp_path / "noref.tar", tmp_path / "cluster")


def test_user_comes_from_security_context_then_image(tmp_path: pathlib.Path, cache: pathlib.Path) -> None:
    make_archive(tmp_path / "img.tar", [BASE], {**CONFIG, "User": "app"})
    image = images.load_archive(tmp_path / "img.tar", tmp_path / "cluster")
    pod: dict[str, Any] = {"spec": {}}
    assert images.user_of(image, pod, {}) == (1000, 1000)
    assert images.user_of(images.Image(**{**image.__dict__, "user": "app:apps"}), pod, {}) == (1000, 1001)
    assert images.user_of(images.Image(**{**image.__dict__, "user": "65532:65532"}), pod, {}) == (
        65532,
        65532,
    )
    pod = {"spec": {"securityContext": {"runAsUser": 7, "runAsGroup": 8}}}
    assert images.user_of(image, pod, {}) == (7, 8)
    assert images.user_of(image, pod, {"securityContext": {"runAsUser": 9}}) == (9, 8)
    with pytest.raises(images.ImageError, match="nobody"):
        images.user_of(images.Image(**{**image.__dict__, "user": "nobody"}), {"spec": {}}, {})


def test_volumes_get_the_kubelet_permissions(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    images.prepare_volume(empty, None)
    assert stat.S_IMODE(empty.stat().st_mode) == 0o777
    pvc = tmp_path / "pvc"
    (pvc / "sub").mkdir(parents=True)
    (pvc / "sub" / "f").write_text("x")
    (pvc / "sub" / "f").chmod(0o600)
    gid = os.getgid()
    images.prepare_volume(pvc, gid)
    for p in (pvc, pvc / "sub", pvc / "sub" / "f"):
        assert p.stat().st_gid == gid and p.stat().st_mode & 0o060 == 0o060, p
    assert pvc.stat().st_mode & stat.S_ISGID and not (pvc / "sub" / "f").stat().st_mode & stat.S_ISGID


def test_mount_points_resolve_symlinks_inside_the_image(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")  # absolute, as in Debian: must not lead to the host's /run
    (root / "etc").mkdir()
    (root / "etc" / "up").symlink_to("../../..")
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert images.resolve_in_root(root, sa) == "/run/secrets/kubernetes.io/serviceaccount"
    assert images.resolve_in_root(root, "/etc/up/tmp") == "/tmp", "no way above the image's root"
    assert images.resolve_in_root(root, "/var/lib/memorywatch/captures") == "/var/lib/memorywatch/captures"
    (root / "loop").symlink_to("loop")
    with pytest.raises(images.ImageError, match="too many symlinks"):
        images.resolve_in_root(root, "/loop/x")


def test_a_host_binary_command_keeps_running_on_the_host(tmp_path: pathlib.Path, cache: pathlib.Path) -> None:
    make_archive(tmp_path / "img.tar", [BASE, TOP], CONFIG)
    image = images.load_archive(tmp_path / "img.tar", tmp_path / "cluster")
    host_binary = tmp_path / "bin" / "gotarget"
    host_binary.parent.mkdir()
    host_binary.write_text("#!/bin/sh\n")
    host_binary.chmod(0o755)
    assert images.host_command_overrides(image, [str(host_binary), "-listen=x"])
    assert not images.host_command_overrides(image, ["/app"]), "in the image: runs in the image"
    assert not images.host_command_overrides(image, ["memorywatch", "run"]), "a name: looked up in the image"
    assert not images.host_command_overrides(image, []), "no command: the image's entrypoint"
    assert not images.host_command_overrides(image, [str(tmp_path / "missing")])
