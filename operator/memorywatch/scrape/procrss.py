"""Current resident memory of a target on this machine, found through /proc (Linux only, best effort).

A loopback target's listening socket is looked up in /proc/net/tcp{,6}, its inode traced to the owning
process through /proc/*/fd, and VmRSS read from /proc/<pid>/status. Whatever stands in the way (another
OS, another user's process, a process that just exited) yields None with a debug log, never an error.

`ProcRssReader` is what the Scraper uses: it keeps the socket table and the socket->pid map for all targets
and refreshes them lazily, so a sample costs one read of /proc/<pid>/status. `read_rss` is the one-shot
form (reads the tables on every call).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import pathlib
import time
from collections.abc import Callable

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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _wanted(host: str) -> set[Address]:
    wanted = {ipaddress.ip_address("127.0.0.1") if host == "localhost" else ipaddress.ip_address(host)}
    if host == "localhost":
        wanted.add(ipaddress.ip_address("::1"))
    return wanted


def listening_sockets(proc: pathlib.Path = pathlib.Path("/proc")) -> dict[int, list[tuple[Address, int]]]:
    """Every listening TCP socket of /proc/net/tcp{,6}: port -> [(address, inode), ...] in table order."""
    by_port: dict[int, list[tuple[Address, int]]] = {}
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
            by_port.setdefault(int(port_hex, 16), []).append((_decode_address(addr_hex), int(fields[9])))
    return by_port


def _inodes_for(by_port: dict[int, list[tuple[Address, int]]], host: str, port: int) -> list[int]:
    """Sockets listening on host:port exactly first, then those on the wildcard address at that port."""
    wanted = _wanted(host)
    exact: list[int] = []
    wildcard: list[int] = []
    for addr, inode in by_port.get(port, ()):
        if addr in wanted:
            exact.append(inode)
        elif addr in _WILDCARDS:
            wildcard.append(inode)
    return exact + wildcard


def listening_inodes(host: str, port: int, proc: pathlib.Path = pathlib.Path("/proc")) -> list[int]:
    """Inodes of sockets listening on host:port (or on the wildcard address at that port)."""
    _wanted(host)  # a host that is not an address raises ValueError before any file is read
    return _inodes_for(listening_sockets(proc), host, port)


def socket_owners(proc: pathlib.Path = pathlib.Path("/proc")) -> dict[int, int]:
    """Socket inode -> the first pid (in /proc order) with an open fd on it, over every process we may read."""
    owners: dict[int, int] = {}
    with os.scandir(proc) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            fd_dir = os.path.join(entry.path, "fd")
            try:
                fds = os.listdir(fd_dir)
            except OSError:  # another user's process, or it exited
                continue
            pid = int(entry.name)
            for fd in fds:
                try:
                    link = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    owners.setdefault(int(link[8:-1]), pid)
    return owners


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


def process_start_time(pid: int, proc: pathlib.Path = pathlib.Path("/proc")) -> float | None:
    """The unix time process `pid` started: its start in clock ticks after boot (/proc/<pid>/stat, field 22)
    plus the boot time (/proc/stat `btime`). None when either cannot be read."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last one.
        ticks = int(stat.rpartition(")")[2].split()[19])
        boot = next(int(line.split()[1]) for line in (proc / "stat").read_text().splitlines()
                    if line.startswith("btime "))  # fmt: skip
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration) as exc:
        log.debug("proc start time: pid %d: %s", pid, exc)
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


class ProcRssReader:
    """`read_rss` for many targets at once, at the cost of one small file read per sample.

    The socket table (/proc/net/tcp{,6}) and the socket -> pid map (every process's fds) are read for all
    targets together, and only when needed: a target not in the table yet, a process that went away (a
    restart), and otherwise every `max_age_seconds` (a socket that changed hands without its process
    exiting). Re-reads triggered by misses happen at most once per `min_refresh_seconds`, so a thousand
    targets appearing together cost one scan, not a thousand. Until then a new target simply has no /proc
    RSS (the caller falls back to MaxRSS for that sample).
    """

    def __init__(
        self,
        proc: pathlib.Path = pathlib.Path("/proc"),
        *,
        max_age_seconds: float = 60.0,
        min_refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._proc = proc
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._sockets: dict[int, list[tuple[Address, int]]] = {}
        self._sockets_at: float | None = None
        self._owners: dict[int, int] = {}
        self._owners_at: float | None = None
        self._known: dict[tuple[str, int], ProcOwner] = {}

    def forget(self, host: str, port: int) -> None:
        """Drop what is remembered about a target that is gone."""
        self._known.pop((host, port), None)

    def rss(self, host: str, port: int) -> int | None:
        """The current RSS of whoever listens on host:port, or None (not found, not visible, not Linux)."""
        key = (host, port)
        known = self._known.get(key)
        now = self._clock()
        fresh = self._sockets_at is not None and now - self._sockets_at < self._max_age
        if known is not None and fresh:
            if known.pid is None:
                return None  # the same socket as last time, owned by a process we may not see
            rss = vm_rss_bytes(known.pid, self._proc)
            if rss is not None:
                return rss
            log.debug("proc rss: pid %d (listening on %s:%d) is gone", known.pid, host, port)
            del self._known[key]
            known = None
        try:
            inodes = self._inodes(host, port, now, missed=known is None)
        except (OSError, ValueError) as exc:
            log.debug("proc rss: cannot read socket tables for %s:%d: %s", host, port, exc)
            return None
        if not inodes:
            self._known.pop(key, None)
            return None
        if known is None or known.inode not in inodes:
            try:
                known = ProcOwner(inodes[0], self._pid(inodes[0], now))
            except OSError as exc:
                log.debug("proc rss: cannot scan processes for %s:%d: %s", host, port, exc)
                return None
            if known.pid is None:
                log.debug("proc rss: the process listening on %s:%d is not visible to us", host, port)
        self._known[key] = known
        if known.pid is None:
            return None
        rss = vm_rss_bytes(known.pid, self._proc)
        if rss is None:
            self._known.pop(key, None)
        return rss

    def start_time(self, host: str, port: int) -> float | None:
        """The unix time the process listening on host:port started, if `rss` found it (None otherwise)."""
        known = self._known.get((host, port))
        if known is None or known.pid is None:
            return None
        return process_start_time(known.pid, self._proc)

    def _inodes(self, host: str, port: int, now: float, *, missed: bool) -> list[int]:
        _wanted(host)  # ValueError for a host that is not an address, before any file is read
        at = self._sockets_at
        if at is None or now - at >= self._max_age or (missed and now - at >= self._min_refresh):
            self._sockets, self._sockets_at = listening_sockets(self._proc), now
        return _inodes_for(self._sockets, host, port)

    def _pid(self, inode: int, now: float) -> int | None:
        pid = self._owners.get(inode)
        at = self._owners_at
        if pid is None and (at is None or now - at >= self._min_refresh):
            self._owners, self._owners_at = socket_owners(self._proc), now
            pid = self._owners.get(inode)
        return pid
