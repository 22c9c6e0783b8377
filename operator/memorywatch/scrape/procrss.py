"""Current resident memory of a target on this machine, found through /proc (Linux only, best effort).

A loopback target's listening socket is looked up in /proc/net/tcp{,6}, its inode traced to the owning
process through /proc/*/fd, and VmRSS read from /proc/<pid>/status. Whatever stands in the way (another
OS, another user's process, a process that just exited) yields None with a debug log, never an error.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import pathlib

log = logging.getLogger(__name__)

_LISTEN = "0A"
_WILDCARDS = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))


@dataclasses.dataclass(frozen=True)
class ProcOwner:
    """The socket inode a target listens on and the process found owning it (None: not visible to us)."""

    inode: int
    pid: int | None


def _decode_address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(words)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def listening_inodes(host: str, port: int, proc: pathlib.Path = pathlib.Path("/proc")) -> list[int]:
    """Inodes of sockets listening on host:port (or on the wildcard address at that port)."""
    wanted = {ipaddress.ip_address("127.0.0.1") if host == "localhost" else ipaddress.ip_address(host)}
    if host == "localhost":
        wanted.add(ipaddress.ip_address("::1"))
    exact: list[int] = []
    wildcard: list[int] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            addr_hex, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            addr = _decode_address(addr_hex)
            inode = int(fields[9])
            if addr in wanted:
                exact.append(inode)
            elif addr in _WILDCARDS:
                wildcard.append(inode)
    return exact + wildcard


def pid_owning(inode: int, proc: pathlib.Path = pathlib.Path("/proc")) -> int | None:
    """The first process with an open fd on socket `inode`, scanning only what we may read."""
    link = f"socket:[{inode}]"
    with os.scandir(proc) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            fd_dir = os.path.join(entry.path, "fd")
            try:
                fds = os.listdir(fd_dir)
            except OSError:  # another user's process, or it exited
                continue
            for fd in fds:
                try:
                    if os.readlink(os.path.join(fd_dir, fd)) == link:
                        return int(entry.name)
                except OSError:
                    continue
    return None


def vm_rss_bytes(pid: int, proc: pathlib.Path = pathlib.Path("/proc")) -> int | None:
    """VmRSS of `pid` in bytes, or None if the process is gone or unreadable."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, _, unit = line.split(":", 1)[1].strip().partition(" ")
            return int(value) * (1024 if unit.strip() == "kB" else 1)
    return None


def read_rss(
    host: str, port: int, known: ProcOwner | None, proc: pathlib.Path = pathlib.Path("/proc")
) -> tuple[int | None, ProcOwner | None]:
    """The current RSS of whoever listens on host:port, and what to remember for next time.

    The /proc scan for the owner runs only when the listening socket changed (first contact, restart),
    including when the owner was not visible: a socket we may not read is not rescanned every interval.
    """
    try:
        inodes = listening_inodes(host, port, proc)
    except (OSError, ValueError) as exc:
        log.debug("proc rss: cannot read socket tables for %s:%d: %s", host, port, exc)
        return None, None
    if not inodes:
        return None, None
    if known is not None and known.inode in inodes:
        owner = known
    else:
        try:
            owner = ProcOwner(inodes[0], pid_owning(inodes[0], proc))
        except OSError as exc:
            log.debug("proc rss: cannot scan processes for %s:%d: %s", host, port, exc)
            return None, None
        if owner.pid is None:
            log.debug("proc rss: the process listening on %s:%d is not visible to us", host, port)
    if owner.pid is None:
        return None, owner
    rss = vm_rss_bytes(owner.pid, proc)
    if rss is None:
        log.debug("proc rss: pid %d (listening on %s:%d) has no readable VmRSS", owner.pid, host, port)
        return None, None
    return rss, owner
