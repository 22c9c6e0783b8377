"""Headless Chromium (Debian's, installed by hack/install-chromium) for report tests, with no network.

Every request the browser would make goes to a proxy on 127.0.0.1 that records it and answers 403, and
host names resolve to nothing: a test then asserts the proxy saw no request at all, which proves the page
fetched nothing (the only way out of the browser is that proxy).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-bypass-list=<-loopback>",
)
TIMEOUT_SECONDS = 90
REPO = pathlib.Path(__file__).resolve().parents[2]


def chromium_binary() -> str:
    """The browser, installing it (idempotent) with the project's own step when missing."""
    env = os.environ.get("MEMORYWATCH_CHROMIUM")
    if env:
        return env
    found = shutil.which("chromium")
    if found:
        return found
    subprocess.run([str(REPO / "hack" / "install-chromium")], check=True, timeout=900)
    found = shutil.which("chromium")
    assert found, "hack/install-chromium ran but no chromium is on PATH"
    return found


class _Recorder(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(4096).decode("latin-1").strip()
        self.server.seen.append(line)  # type: ignore[attr-defined]
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@contextmanager
def recording_proxy() -> Iterator[tuple[str, list[str]]]:
    """A proxy URL and the list of request lines it received."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    seen: list[str] = []
    server.seen = seen  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def run_chromium(page: pathlib.Path, proxy: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run over `page` with a fresh profile directory; raises with stderr on failure."""
    with tempfile.TemporaryDirectory(prefix="mw-chromium-") as profile:
        proc = subprocess.run(
            [
                chromium_binary(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--proxy-server={proxy}",
                *args,
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
            env={**os.environ, "HOME": profile},
        )
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc
