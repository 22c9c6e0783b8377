"""Small real HTTP servers on 127.0.0.1 that misbehave on purpose, for the scraper's hostile-input tests.

Each `RawServer` runs on the test's own event loop (asyncio.start_server), reads one request head per
connection and hands it to a handler coroutine that may answer properly, stall, trickle or lie.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import zlib
from collections.abc import Awaitable, Callable
from types import TracebackType


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    target: str  # path with query, as sent
    headers: dict[str, str]  # lower-case names

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """`async with RawServer(handler) as server:` then scrape `server.url`. Requests seen are in `requests`."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.requests: list[Request] = []
        self.connections = 0
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections a client holds open to this server right now."""
        return len(self._writers)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self._host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                request = Request(method, target, headers)
                self.requests.append(request)
                await self._handler(request, writer)
                if writer.is_closing():
                    return
        except (ConnectionError, asyncio.CancelledError):
            return  # shutdown cancels handlers; returning keeps asyncio from logging each one
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            self._writers.discard(writer)
            writer.close()


async def respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> None:
    """A complete HTTP/1.1 response with Content-Length; the connection stays open for keep-alive."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def start_chunked(
    writer: asyncio.StreamWriter, content_type: str = "text/plain; charset=utf-8"
) -> None:
    writer.write(
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    await writer.drain()


async def send_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def gzip_bomb(expanded_mib: int) -> bytes:
    """A gzip stream of about expanded_mib/1000 MiB that inflates to `expanded_mib` MiB of zeros.

    Built from one full-flushed deflate block repeated, so it costs milliseconds to make. The trailer
    CRC is wrong, which does not matter: a capped reader must give up long before it gets there.
    """
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    return head + block * (expanded_mib - 1) + deflate.flush()


NGINX_DEFAULT_PAGE = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""


def profile_bomb(samples: int) -> bytes:
    """A valid gzipped pprof heap profile with `samples` samples of one stack: ~30 KiB on the wire per
    million samples, and hundreds of MiB of Python objects if decoded without a sample budget."""
    from memorywatch.pprof import profile_pb2

    profile = profile_pb2.Profile()
    profile.string_table.extend(["", "inuse_space", "bytes", "main.bomb", "bomb.go"])
    value_type = profile.sample_type.add()
    value_type.type, value_type.unit = 1, 2
    function = profile.function.add()
    function.id, function.name, function.filename = 1, 3, 4
    location = profile.location.add()
    location.id = 1
    line = location.line.add()
    line.function_id, line.line = 1, 7
    one = profile_pb2.Sample(location_id=[1], value=[1]).SerializeToString()
    # Repeated field 2 (sample): tag, length, message; written by hand so a million costs no Python objects.
    entry = b"\x12" + bytes([len(one)]) + one
    return gzip_bytes(profile.SerializeToString() + entry * samples)


def gzip_bytes(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    return deflate.compress(data) + deflate.flush()


def goroutine_groups_text(groups: int) -> bytes:
    """goroutine?debug=1 with `groups` distinct stacks (each a different PC), as a hostile target lies."""
    parts = [f"goroutine profile: total {groups}\n".encode()]
    for i in range(groups):
        pc = 0x400000 + i * 16
        parts.append(f"1 @ {pc:#x}\n#\t{pc:#x}\tmain.stack{i}+0x10\t/src/main.go:{i + 1}\n\n".encode())
    return b"".join(parts)


def memstats_array_heap_text(entries: int) -> bytes:
    """heap?debug=1 whose MemStats PauseNs array has `entries` numbers (Go prints 256)."""
    return (
        b"heap profile: 1: 1024 [1: 1024] @ heap/1048576\n"
        b"1: 1024 [1: 1024] @ 0x401000\n#\t0x401000\tmain.f+0x1\t/src/main.go:1\n\n"
        b"# runtime.MemStats\n# Alloc = 1024\n# Sys = 4194304\n# PauseNs = ["
        + b" ".join([b"1000"] * entries)
        + b"]\n# NumGC = 3\n"
    )


def big_metrics_text(mebibytes: int) -> bytes:
    """A /metrics body of `mebibytes` MiB: an application's own series, then the Go series we read."""
    line = b'app_requests_total{path="/api/v1/items",code="200",instance="replica-0001"} 123456\n'
    head = line * (mebibytes * 1024 * 1024 // len(line))
    return (
        head
        + b"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 5.0e+07\ngo_goroutines 12\n"
    )


HOSTILE_GOROUTINES = 987_654  # what a hostile index page claims, so a Threshold rule can single it out


def hostile_go_handler(kind: str, fixtures: pathlib.Path) -> Handler:
    """A Go-looking target serving one kind of hostile input, from real recordings (`fixtures`):

    - `bomb`: normal heap?debug=1, but 30 MiB of /metrics, a 2,000,000-sample profile bomb as its heap
      profile, 50,000 distinct goroutine stacks, and an index claiming HOSTILE_GOROUTINES goroutines;
    - `arrays`: a MemStats PauseNs array of 200,000 entries in heap?debug=1;
    - `hang`: heap?debug=1 that stops mid-body and never finishes.
    """
    index = (
        (fixtures / "index.html")
        .read_bytes()
        .replace(b"<td>50</td>", f"<td>{HOSTILE_GOROUTINES}</td>".encode())
    )
    heap_text = (fixtures / "heap_debug1.txt").read_bytes()
    metrics = big_metrics_text(30)
    bomb = profile_bomb(2_000_000)
    stacks = goroutine_groups_text(50_000)
    arrays = memstats_array_heap_text(200_000)

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        path, debug = request.path, "debug=1" in request.target
        if path == "/debug/pprof/":
            await respond(writer, 200, index, content_type="text/html; charset=utf-8")
        elif path == "/debug/pprof/heap" and debug:
            if kind == "arrays":
                await respond(writer, 200, arrays)
            elif kind == "hang":
                await start_chunked(writer)
                await send_chunk(writer, heap_text[:4096])
                await asyncio.Event().wait()
            else:
                await respond(writer, 200, heap_text)
        elif path == "/metrics" and kind == "bomb":
            await respond(writer, 200, metrics)
        elif path == "/debug/pprof/heap":
            await respond(writer, 200, bomb, content_type="application/octet-stream")
        elif path == "/debug/pprof/goroutine" and debug:
            await respond(writer, 200, stacks)
        else:
            await respond(writer, 404, b"404 page not found\n")

    return handler
