"""Local resident memory through /proc: the owner of a listening socket, found for real on this machine."""

from __future__ import annotations

import os
import pathlib
import socket
import sys

import pytest

from memorywatch.scrape import procrss

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux only")


def own_rss() -> int:
    rss = procrss.vm_rss_bytes(os.getpid())
    assert rss is not None
    return rss


@pytest.mark.parametrize("bind_host", ["127.0.0.1", "0.0.0.0"])
def test_finds_this_process_listening_on_loopback(bind_host: str) -> None:
    with socket.socket() as sock:
        sock.bind((bind_host, 0))
        sock.listen()
        port = sock.getsockname()[1]
        rss, owner = procrss.read_rss("127.0.0.1", port, None)
        assert owner is not None and owner.pid == os.getpid()
        assert rss is not None and abs(rss - own_rss()) < 32 * 1024 * 1024
        # The second read reuses the owner instead of scanning /proc again.
        again, same = procrss.read_rss("127.0.0.1", port, owner)
        assert same is owner and again is not None


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(socket.AF_INET6) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError:
            pytest.skip("::1 not configured")
        sock.listen()
        rss, owner = procrss.read_rss("::1", sock.getsockname()[1], None)
    assert owner is not None and owner.pid == os.getpid() and rss


def test_another_address_on_the_same_port_is_not_ours() -> None:
    # Local control-plane pods listen on their own 127.x address; only the exact one (or a wildcard) counts.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert procrss.read_rss("127.0.0.2", port, None) == (None, None)


def test_nobody_listening_gives_none() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert procrss.read_rss("127.0.0.1", port, None) == (None, None)


def test_an_owner_we_cannot_see_is_remembered_not_rescanned(tmp_path: pathlib.Path) -> None:
    # A /proc look-alike: the socket table lists a listener on 127.0.0.1:6060, but no process dir shows it,
    # as when the target runs as another user. The answer is None, quietly, and the miss is remembered.
    (tmp_path / "net").mkdir()
    header = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    )
    row = "   0: 0100007F:17AC 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1\n"
    (tmp_path / "net" / "tcp").write_text(header + row)
    rss, owner = procrss.read_rss("127.0.0.1", 6060, None, tmp_path)
    assert rss is None and owner == procrss.ProcOwner(424242, None)
    # A process dir appearing later is not found while the socket is the same one: no rescans per interval.
    (tmp_path / "77" / "fd").mkdir(parents=True)
    (tmp_path / "77" / "fd" / "3").symlink_to("socket:[424242]")
    (tmp_path / "77" / "status").write_text("Name:\tgo\nVmRSS:\t  2048 kB\n")
    assert procrss.read_rss("127.0.0.1", 6060, owner, tmp_path) == (None, owner)
    # A new socket (a restart) triggers the scan, which now finds the process.
    (tmp_path / "net" / "tcp").write_text(header + row.replace("424242", "525252"))
    (tmp_path / "77" / "fd" / "4").symlink_to("socket:[525252]")
    rss, found = procrss.read_rss("127.0.0.1", 6060, owner, tmp_path)
    assert rss == 2048 * 1024 and found == procrss.ProcOwner(525252, 77)


# -- ProcRssReader: the tables are shared by all targets and re-read lazily ---------------------------------

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def listener(port: int, inode: int, addr_hex: str = "0100007F") -> str:
    return f"   0: {addr_hex}:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1\n"


def fake_proc(root: pathlib.Path, rows: list[str], pids: dict[int, tuple[list[int], int]]) -> None:
    """A /proc look-alike: the tcp table holds `rows`; pid -> (socket inodes it holds, VmRSS in kB)."""
    (root / "net").mkdir(exist_ok=True)
    (root / "net" / "tcp").write_text(HEADER + "".join(rows))
    for pid, (inodes, rss_kb) in pids.items():
        (root / str(pid) / "fd").mkdir(parents=True, exist_ok=True)
        for fd, inode in enumerate(inodes, start=3):
            link = root / str(pid) / "fd" / str(fd)
            link.unlink(missing_ok=True)
            link.symlink_to(f"socket:[{inode}]")
        (root / str(pid) / "status").write_text(f"Name:\tgo\nVmRSS:\t  {rss_kb} kB\n")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reader_reads_the_tables_once_for_many_targets(tmp_path: pathlib.Path) -> None:
    fake_proc(
        tmp_path, [listener(7001, 11), listener(7002, 12), listener(7003, 13)], {77: ([11, 12, 13], 4096)}
    )
    reader = procrss.ProcRssReader(tmp_path, clock=FakeClock())
    assert reader.rss("127.0.0.1", 7001) == 4096 * 1024
    # Both tables are gone now: the other targets are still answered from what the first read saw.
    (tmp_path / "net" / "tcp").unlink()
    for fd in (tmp_path / "77" / "fd").iterdir():
        fd.unlink()
    assert reader.rss("127.0.0.1", 7002) == 4096 * 1024
    assert reader.rss("127.0.0.1", 7003) == 4096 * 1024
    # The current RSS is read every time.
    (tmp_path / "77" / "status").write_text("VmRSS:\t  8192 kB\n")
    assert reader.rss("127.0.0.1", 7001) == 8192 * 1024


def test_reader_follows_a_restart_once_the_refresh_interval_allows(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    fake_proc(tmp_path, [listener(7001, 11)], {77: ([11], 1000)})
    reader = procrss.ProcRssReader(tmp_path, clock=clock, min_refresh_seconds=5.0)
    assert reader.rss("127.0.0.1", 7001) == 1000 * 1024
    # The target restarts: pid 77 is gone, pid 88 listens on a new socket of the same port.
    for path in sorted((tmp_path / "77").rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() else path.rmdir()
    (tmp_path / "77").rmdir()
    fake_proc(tmp_path, [listener(7001, 21)], {88: ([21], 3000)})
    clock.now += 1.0
    assert reader.rss("127.0.0.1", 7001) is None  # too soon to re-read the tables: no value, no error
    clock.now += 5.0
    assert reader.rss("127.0.0.1", 7001) == 3000 * 1024


def test_reader_rechecks_a_socket_that_changed_hands_after_max_age(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    fake_proc(tmp_path, [listener(7001, 11)], {})  # listed, but its owner is not visible to us
    reader = procrss.ProcRssReader(tmp_path, clock=clock, max_age_seconds=60.0)
    assert reader.rss("127.0.0.1", 7001) is None
    fake_proc(tmp_path, [listener(7001, 31)], {99: ([31], 500)})
    clock.now += 30.0
    assert reader.rss("127.0.0.1", 7001) is None  # remembered as not visible: no scan per interval
    clock.now += 31.0
    assert reader.rss("127.0.0.1", 7001) == 500 * 1024


def test_reader_wildcard_and_other_addresses(tmp_path: pathlib.Path) -> None:
    fake_proc(tmp_path, [listener(7001, 41, "00000000")], {55: ([41], 64)})
    reader = procrss.ProcRssReader(tmp_path, clock=FakeClock())
    assert reader.rss("127.0.0.5", 7001) == 64 * 1024  # 0.0.0.0:7001 serves every address
    assert reader.rss("127.0.0.1", 7002) is None
    assert reader.rss("not-an-address", 7001) is None


def test_reader_on_this_machine() -> None:
    reader = procrss.ProcRssReader()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        rss = reader.rss("127.0.0.1", port)
        assert rss is not None and abs(rss - own_rss()) < 32 * 1024 * 1024
        assert reader.rss("127.0.0.1", port) is not None
    reader.forget("127.0.0.1", port)


def test_the_start_time_of_the_process_behind_a_socket() -> None:
    """A real child process listening on loopback: the reader finds it and says when it started."""
    import subprocess
    import time

    before = time.time()
    child = subprocess.Popen(
        [sys.executable, "-c", "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
         " print(s.getsockname()[1], flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        reader = procrss.ProcRssReader()
        assert reader.start_time("127.0.0.1", port) is None, "unknown until `rss` has found the process"
        assert reader.rss("127.0.0.1", port) is not None
        started = reader.start_time("127.0.0.1", port)
        assert started is not None and before - 1 <= started <= time.time()
    finally:
        child.kill()
        child.communicate()
    assert procrss.process_start_time(child.pid) is None, "a process that is gone has no start time"
