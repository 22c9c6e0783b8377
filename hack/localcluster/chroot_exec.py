"""Start one container from an unpacked image: run inside `unshare --mount --propagation private` by the runner.

    python -m localcluster.chroot_exec SPEC.json

SPEC (written by the runner): rootfs, mountpoint, mounts [[host dir, container path, read_only]], uid, gid,
argv, env, working_dir. In this process's own mount namespace (so nothing is visible outside and everything
goes away with the container): the image's root filesystem is bind-mounted at the mountpoint and made
read-only, /proc, /dev and the volumes are mounted into it, then the process chroots into it, drops to the
image's (or the pod's) user and group with no supplementary groups, and execs the entrypoint. The pid stays
the same from `unshare` to the entrypoint, so the runner's signals and process group reach it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"chroot-exec: mount {' '.join(args)} failed: {proc.stderr.strip()}")


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    mnt = spec["mountpoint"]
    _mount("--bind", spec["rootfs"], mnt)
    _mount("-t", "proc", "proc", f"{mnt}/proc")
    _mount("--rbind", "/dev", f"{mnt}/dev")
    for host, path, read_only in spec["mounts"]:
        target = f"{mnt}{path}"
        _mount("--bind", host, target)
        if read_only:
            _mount("-o", "remount,bind,ro", target)
    _mount("-o", "remount,bind,ro", mnt)  # the root is read-only; the volumes on it are separate mounts
    os.chroot(mnt)
    os.chdir(spec["working_dir"] or "/")
    os.setgroups([])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    argv = spec["argv"]
    exe = argv[0]
    if "/" not in exe:
        for d in spec["env"].get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
            if os.access(os.path.join(d, exe), os.X_OK):
                exe = os.path.join(d, exe)
                break
    try:
        os.execve(exe, argv, spec["env"])
    except OSError as e:
        raise SystemExit(f"chroot-exec: cannot exec {exe} in the image: {e.strerror}") from None


if __name__ == "__main__":
    main()
