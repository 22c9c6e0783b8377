"""Starting and stopping local processes, each in its own process group, tracked by pid files.

Every process the local cluster starts (control-plane components and pod processes) carries the environment
variable MW_CLUSTER_DIR=<cluster dir>; `down` uses it to find stragglers by pid (via /proc/<pid>/environ),
so it never has to kill anything by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

MARKER = "MW_CLUSTER_DIR"


def start(
    argv: list[str],
    *,
    log_file: Path,
    pid_file: Path | None,
    env: Mapping[str, str],
    cwd: Path,
) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab", buffering=0) as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # own session and process group: signals go to the whole group
            close_fds=True,
        )
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{proc.pid}\n")
    return proc


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _stat_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    state = _stat_state(pid)
    return state is not None and state not in ("Z", "X")


def environ_has(pid: int, key: str, value: str) -> bool:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{key}={value}".encode() in data.split(b"\0")


def environ_get(pid: int, key: str) -> str | None:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = f"{key}=".encode()
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def cmdline(pid: int) -> list[str]:
    try:
        return [
            a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a
        ]
    except OSError:
        return []


def ours(pid: int | None, cluster_dir: str) -> bool:
    """Alive and started by this cluster (guards against pid reuse)."""
    return pid is not None and alive(pid) and environ_has(pid, MARKER, cluster_dir)


def marked_pids(cluster_dir: str) -> list[int]:
    """All live processes carrying MW_CLUSTER_DIR=<cluster_dir>."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and ours(int(entry), cluster_dir):
            found.append(int(entry))
    return found


def _signal_group_or_pid(pid: int, sig: int) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(pids: Iterable[int], grace: float = 10.0) -> list[int]:
    """SIGTERM each process (its whole group if it leads one), SIGKILL what is left after `grace` seconds.
    Returns the pids that had to be killed."""
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        _signal_group_or_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        _reap()
        time.sleep(0.1)
    killed = [p for p in pids if alive(p)]
    for pid in killed:
        _signal_group_or_pid(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in killed):
        _reap()
        time.sleep(0.05)
    return killed


def _reap() -> None:
    """Collect exited children of this process, if any (so they do not linger as zombies)."""
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
