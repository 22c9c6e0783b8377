"""A real HTTP server on 127.0.0.1 playing notification sinks, by path:

/ok/...        200, records the JSON body
/flaky/...     503 for the first `flaky_failures` requests, then 200
/fail/...      500 always
/hang/...      accepts and answers nothing until released (or 30 s)
/redirect/...  302 to /ok/redirected
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@dataclasses.dataclass
class Seen:
    path: str
    body: Any
    content_type: str
    host: str = ""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        with self.server.lock:
            self.server.seen.append(
                Seen(
                    self.path,
                    json.loads(raw),
                    self.headers.get("Content-Type", ""),
                    self.headers.get("Host", ""),
                )
            )
            kind = self.path.split("/")[1]
            count = sum(1 for s in self.server.seen if s.path.split("/")[1] == kind)
        if kind == "hang":
            self.server.release.wait(30)
            status = 200
        elif kind == "fail":
            status = 500
        elif kind == "flaky":
            status = 503 if count <= self.server.flaky_failures else 200
        elif kind == "redirect":
            self.send_response(302)
            self.send_header("Location", "/ok/redirected")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            status = 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self.flaky_failures = 2

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (the notifier's timeout on /hang) is what the tests expect: no traceback in the log
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def url(self, path: str, *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.server_address[1]}{path}"

    def of(self, kind: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.split("/")[1] == kind]


@contextmanager
def sink_server(tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    """The server on 127.0.0.1; with `tls` (a server-side context holding its certificate) it speaks https."""
    server = _Server()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
