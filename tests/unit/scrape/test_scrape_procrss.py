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
