"""Container images for the pod runner: load an OCI image archive, unpack its root filesystem once per digest.

`hack/local-cluster load-image ARCHIVE` (like `kind load image-archive`) reads an OCI image layout tar (what
hack/build-image writes), unpacks its layers in order (whiteouts applied) into
`${MEMORYWATCH_CACHE:-~/.cache/memorywatch}/images/rootfs/<manifest digest>/` unless that digest is already
unpacked, and records the image's references (the `org.opencontainers.image.ref.name` / containerd name
annotations) with its digest, entrypoint, cmd, env, user and working directory in `<cluster dir>/images.json`.
The pod runner then runs a container whose `image` is recorded there from that root filesystem
(see chroot_exec.py); other containers keep running their `command` as a host process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

REF_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class ImageError(Exception):
    """The archive is not an OCI image layout the runner can use."""


@dataclasses.dataclass(frozen=True)
class Image:
    refs: tuple[str, ...]
    digest: str
    rootfs: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    user: str
    working_dir: str

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Image:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def cache_dir() -> Path:
    return Path(os.environ.get("MEMORYWATCH_CACHE") or Path.home() / ".cache" / "memorywatch") / "images"


def _member_json(tar: tarfile.TarFile, name: str) -> Any:
    f = tar.extractfile(name)
    if f is None:
        raise ImageError(f"{name} missing from the archive")
    return json.load(f)


def _blob(digest: str) -> str:
    algo, _, hexdigest = digest.partition(":")
    return f"blobs/{algo}/{hexdigest}"


def load_archive(archive: Path, cluster_dir: Path) -> Image:
    """Unpack (once per digest) and register the image in ARCHIVE for the cluster in CLUSTER_DIR."""
    with tarfile.open(archive) as tar:
        try:
            index = _member_json(tar, "index.json")
        except KeyError:
            raise ImageError(f"{archive}: no index.json: not an OCI image layout archive") from None
        if not index.get("manifests"):
            raise ImageError(f"{archive}: index.json lists no manifest")
        desc = index["manifests"][0]
        manifest = _member_json(tar, _blob(desc["digest"]))
        config = _member_json(tar, _blob(manifest["config"]["digest"])).get("config") or {}
        refs = tuple(
            dict.fromkeys(
                v for k, v in (desc.get("annotations") or {}).items() if k in REF_ANNOTATIONS and ":" in v
            )
        )
        if not refs:
            raise ImageError(f"{archive}: the manifest has no reference annotation ({REF_ANNOTATIONS[1]})")
        rootfs = cache_dir() / "rootfs" / desc["digest"].replace(":", "-")
        if not (rootfs / ".complete").exists():
            _unpack(tar, [layer["digest"] for layer in manifest["layers"]], rootfs)
    image = Image(
        refs=refs,
        digest=desc["digest"],
        rootfs=str(rootfs),
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        env=tuple(config.get("Env") or ()),
        user=str(config.get("User") or "0"),
        working_dir=str(config.get("WorkingDir") or "/"),
    )
    cluster_dir.mkdir(parents=True, exist_ok=True)
    registry = cluster_dir / "images.json"
    known = load_registry(cluster_dir)
    for ref in refs:
        known[ref] = image
    tmp = registry.with_suffix(".tmp")
    tmp.write_text(json.dumps({ref: img.as_json() for ref, img in known.items()}, indent=1))
    tmp.replace(registry)
    return image


def load_registry(cluster_dir: Path) -> dict[str, Image]:
    try:
        data = json.loads((cluster_dir / "images.json").read_text())
    except (OSError, ValueError):
        return {}
    return {ref: Image.from_json(d) for ref, d in data.items()}


def _unpack(tar: tarfile.TarFile, layers: list[str], rootfs: Path) -> None:
    """Layers in order into a fresh directory, renamed into place when complete (a crash leaves no half root)."""
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=rootfs.parent))
    work.chmod(0o755)  # mkdtemp makes it 0700: the image user must be able to enter its root
    try:
        for digest in layers:
            blob = tar.extractfile(_blob(digest))
            if blob is None:
                raise ImageError(f"layer {digest} missing from the archive")
            _apply_layer(blob, work)
        (work / ".complete").write_text("\n".join(layers) + "\n")
        shutil.rmtree(rootfs, ignore_errors=True)
        work.rename(rootfs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _apply_layer(blob: IO[bytes], root: Path) -> None:
    with tarfile.open(fileobj=blob, mode="r|*") as layer:
        for m in layer:
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            path = Path(name.lstrip("/"))
            if not path.parts or path.parts == (".",) or ".." in path.parts:
                continue
            m.name = str(path)
            base = path.name
            if base == ".wh..wh..opq":  # opaque directory: drop what lower layers put there
                target = root / path.parent
                if target.is_dir():
                    for child in target.iterdir():
                        _remove(child)
                continue
            if base.startswith(".wh."):
                _remove(root / path.parent / base[len(".wh.") :])
                continue
            if path.parts[0] == "dev" and (m.ischr() or m.isblk() or m.isfifo()):
                continue  # the runner binds the host's /dev
            dest = root / path
            if dest.is_symlink() or (dest.exists() and not (dest.is_dir() and m.isdir())):
                _remove(dest)
            layer.extract(m, root, numeric_owner=True, filter="fully_trusted")


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)


def lookup(cluster_dir: Path, ref: str) -> Image | None:
    """The loaded image a pod's `image` names: by reference, or by digest (`name@sha256:…`)."""
    if not ref:
        return None
    known = load_registry(cluster_dir)
    if ref in known:
        return known[ref]
    if "@" in ref:
        digest = ref.split("@", 1)[1]
        return next((img for img in known.values() if img.digest == digest), None)
    return None


def _passwd_id(rootfs: Path, table: str, name: str) -> int | None:
    try:
        for line in (rootfs / "etc" / table).read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 3 and fields[0] == name:
                return int(fields[2])
    except (OSError, ValueError):
        return None
    return None


def user_of(image: Image, pod: dict[str, Any], container: dict[str, Any]) -> tuple[int, int]:
    """uid and gid as a kubelet decides them: the container's securityContext, then the pod's, then the image's
    USER (`uid[:gid]` or names looked up in the image's /etc/passwd and /etc/group)."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}
    user, _, group = image.user.partition(":")
    rootfs = Path(image.rootfs)
    image_uid = int(user) if user.isdigit() else _passwd_id(rootfs, "passwd", user)
    if image_uid is None:
        raise ImageError(f"image user {user!r} is not in the image's /etc/passwd")
    image_gid = (
        int(group) if group.isdigit() else (_passwd_id(rootfs, "group", group) if group else image_uid)
    )
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", image_uid))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", image_gid if image_gid is not None else uid))
    return int(uid), int(gid)


def prepare_volume(local: Path, fs_group: int | None) -> None:
    """What a kubelet does to a writable volume: with fsGroup, group-owned by it, group-writable and setgid;
    without, an emptyDir is world-writable (0777) so any uid can use it."""
    if not local.is_dir():
        return
    if fs_group is None:
        if not any(local.iterdir()):
            local.chmod(0o777)
        return
    for dirpath, dirnames, filenames in os.walk(local):
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            st = os.stat(p)
            if st.st_gid != fs_group:
                os.chown(p, -1, fs_group)
            mode = st.st_mode | 0o060 | (0o2010 if os.path.isdir(p) else 0)
            if mode != st.st_mode:
                os.chmod(p, mode & 0o7777)


def resolve_in_root(root: Path, path: str) -> str:
    """PATH as the container sees it, with every symlink followed inside ROOT (Debian's /var/run -> /run is
    absolute: followed on the host it would leave the image). Used for mount points before the chroot."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise ImageError(f"{path}: too many symlinks in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
        else:
            resolved.append(part)
    return "/" + "/".join(resolved)


def host_command_overrides(image: Image, command: list[str]) -> bool:
    """The project's convention before images: `command` is an absolute path to a binary on this machine (a
    test's Go target, the venv's `memorywatch` in hack/demo). Such a container keeps running as a host process
    even when its image is loaded, when the path is not in the image but is executable here."""
    if not command or not command[0].startswith("/"):
        return False
    in_image = Path(image.rootfs) / resolve_in_root(Path(image.rootfs), command[0]).lstrip("/")
    return not os.path.lexists(in_image) and os.access(command[0], os.X_OK)
