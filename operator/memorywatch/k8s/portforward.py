"""`access: PortForward`: a local TCP listener per (namespace, pod, port) whose every accepted connection is
bridged to a new port-forward stream to the pod through the API server (`pods/portforward`, WebSocket).

The scraper connects to `forwarded_url(...)` as to any target; keep-alive works because one local connection is
one stream. The bridge is plain TCP, so TLS to an https target still runs end to end (set `server_name` when the
certificate names something other than 127.0.0.1).

Errors: `forwarded_url` raises a `KubeError` only when the listener cannot be set up: the first stream it opens
to check the way is refused (`ForbiddenError` for RBAC, `NotFoundError` for a missing pod, a plain `KubeError`
with status 400 for a pod that is not running, `ApiUnavailable` when the API server cannot be reached or cannot
reach the node). Afterwards a failure concerns one connection only: it is logged at info and that connection
is closed, which the scraper reports as the target being unreachable. A listener whose pod is gone (404 when
opening a stream) retires itself, so the next `forwarded_url` call checks again.

Limit: the kubernetes client's WebSocket port-forward protocol has no half-close, so a client that shuts down
its sending side before reading the whole answer loses the rest of it (HTTP clients do not do that).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import threading
import urllib.parse

from kubernetes.stream.ws_client import PortForward, create_websocket, get_websocket_url
from websocket import WebSocketBadStatusException, WebSocketException

from memorywatch.k8s.client import ApiUnavailable, ForbiddenError, Kube, KubeError, NotFoundError

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 15.0
# A listener nobody asked for (forwarded_url) or connected to for this long retires: its pod has most likely
# left the watch. The controller asks for every watched pod's URL on each reconcile and gets a new listener
# if the old one retired, so this only frees listeners of pods no one watches any more.
IDLE_SECONDS = 600.0
READ_CHUNK_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class ForwardKey:
    namespace: str
    pod: str
    port: int

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}:{self.port}"


def _open_stream(kube: Kube, key: ForwardKey) -> PortForward:
    """Open one port-forward stream (blocking; run in a thread).

    `kubernetes.stream.portforward(...)` is the same WebSocket machinery, but it swaps `request` on the shared
    ApiClient while it runs (not thread-safe next to the operator's other calls) and turns a refused handshake
    into an AttributeError; so we call its two halves, `create_websocket` and `PortForward`, directly."""
    cfg = kube.api.configuration
    path = "/api/v1/namespaces/{}/pods/{}/portforward".format(
        urllib.parse.quote(key.namespace, safe=""), urllib.parse.quote(key.pod, safe="")
    )
    url = get_websocket_url(f"{cfg.host}{path}?ports={key.port}")
    headers = {
        str(s["key"]).lower(): str(s["value"])
        for s in cfg.auth_settings().values()
        if s.get("in") == "header" and s.get("value")
    }
    what = f"port-forward to pod {key}"
    try:
        websocket = create_websocket(cfg, url, headers)
    except WebSocketBadStatusException as e:
        raise _translate_handshake(what, e) from None
    except (WebSocketException, OSError) as e:
        raise ApiUnavailable(f"{what}: the API server did not answer ({type(e).__name__}: {e})") from None
    return PortForward(websocket, [key.port])


def _translate_handshake(what: str, e: WebSocketBadStatusException) -> KubeError:
    status = int(e.status_code)
    detail = ""
    try:
        body = json.loads(e.resp_body or b"{}")
        detail = str(body.get("message", "")) if isinstance(body, dict) else ""
    except ValueError:
        detail = (e.resp_body or b"").decode("utf-8", "replace")[:300]
    msg = f"{what}: {status} {e.status_message or ''}".rstrip() + (f": {detail}" if detail else "")
    if status == 403:
        # The API server checks `get` for the GET and `create` for the WebSocket upgrade; name both.
        return ForbiddenError(
            f"{msg} (a port-forward over WebSocket needs get and create on pods/portforward)", status
        )
    if status == 404:
        return NotFoundError(msg, status)
    if status >= 500:
        return ApiUnavailable(msg, status)
    return KubeError(msg, status)


class _Forward:
    """One listener on 127.0.0.1 bridging to one pod port."""

    def __init__(self, kube: Kube, key: ForwardKey) -> None:
        self.kube = kube
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.server: asyncio.Server | None = None
        self.local_port = 0
        self.closed = False
        self.last_used = self.loop.time()
        self._janitor: asyncio.Task[None] | None = None
        self._bridges: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # One stream up front proves the way (RBAC, pod, node) before anyone is handed a URL.
        probe = await self._stream()
        probe.close()
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.local_port = int(self.server.sockets[0].getsockname()[1])
        self._janitor = asyncio.create_task(self._retire_when_idle(), name=f"port-forward {self.key} idle")
        log.info("port-forward listener 127.0.0.1:%d -> pod %s", self.local_port, self.key)

    async def _stream(self) -> PortForward:
        abandoned = threading.Event()

        def open_or_discard() -> PortForward:
            pf = _open_stream(self.kube, self.key)
            if abandoned.is_set():  # the caller timed out meanwhile: nobody will close it otherwise
                pf.close()
            return pf

        try:
            return await asyncio.wait_for(asyncio.to_thread(open_or_discard), OPEN_TIMEOUT_SECONDS)
        except TimeoutError:
            abandoned.set()
            raise ApiUnavailable(
                f"port-forward to pod {self.key}: no answer within {OPEN_TIMEOUT_SECONDS:g}s"
            ) from None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.last_used = self.loop.time()
        task = asyncio.current_task()
        if task is not None:
            self._bridges.add(task)
        try:
            await self._bridge(reader, writer)
        except asyncio.CancelledError:
            # Only `close()` cancels a bridge; ending normally keeps asyncio's stream callback from logging it.
            pass
        finally:
            if task is not None:
                self._bridges.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pf = await self._stream()
        except NotFoundError as e:
            log.info("%s; closing its listener 127.0.0.1:%d", e, self.local_port)
            await self.close()
            return
        except KubeError as e:
            log.info("%s; closing this connection", e)
            return
        # The stream's local end is a socketpair half that the client's proxy thread services; asyncio can
        # drive it directly, so bytes are pumped without a thread per direction.
        sock: socket.socket = pf.socket(self.key.port)._socket
        try:
            pod_reader, pod_writer = await asyncio.open_connection(sock=sock)
        except OSError as e:
            log.info("port-forward to pod %s: %s; closing this connection", self.key, e)
            pf.close()
            return
        up = asyncio.create_task(_pump(reader, pod_writer))
        down = asyncio.create_task(_pump(pod_reader, writer))
        try:
            # Either side ending ends the connection: the protocol cannot carry a half-close.
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            pod_writer.close()
            with contextlib.suppress(OSError):
                await pod_writer.wait_closed()
        error = pf.error(self.key.port)
        if error:
            log.info("port-forward to pod %s: %s", self.key, error.strip())

    async def _retire_when_idle(self) -> None:
        while not self.closed:
            await asyncio.sleep(IDLE_SECONDS / 4)
            if not self._bridges and self.loop.time() - self.last_used > IDLE_SECONDS:
                log.info("port-forward listener for pod %s idle for %gs: closing it", self.key, IDLE_SECONDS)
                await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _registry.pop(_entry_key(self.kube, self.key), None)
        if self.server is not None:
            self.server.close()
        current = asyncio.current_task()
        if self._janitor is not None and self._janitor is not current:
            self._janitor.cancel()
        others = [t for t in self._bridges if t is not current]
        for t in others:
            t.cancel()
        # Wait for them, so every connection is closed before the caller goes on (or its event loop ends).
        await asyncio.gather(*others, return_exceptions=True)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(READ_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()


def _entry_key(kube: Kube, key: ForwardKey) -> tuple[ForwardKey, int]:
    # Keyed by the Kube too: a listener carries the credentials of the client that opened it.
    return key, id(kube)


# (namespace, pod, port, Kube) -> the listener, or the task still setting it up (so concurrent callers share it).
_registry: dict[tuple[ForwardKey, int], asyncio.Task[_Forward]] = {}


async def forwarded_url(kube: Kube, namespace: str, pod: str, port: int, *, scheme: str = "http") -> str:
    """The base URL (`scheme://127.0.0.1:<local port>`) of a listener forwarding to `pod:port` through the API
    server, created on first use and reused afterwards. Raises KubeError when it cannot be set up."""
    key = ForwardKey(namespace, pod, int(port))
    entry = _entry_key(kube, key)
    loop = asyncio.get_running_loop()
    task = _registry.get(entry)
    if task is not None and (task.get_loop() is not loop or _dead(task)):
        # A listener of another (finished) event loop, or one that failed or retired: start afresh.
        _registry.pop(entry, None)
        if task.get_loop() is not loop:
            _close_stale(task)
        task = None
    if task is None:
        task = loop.create_task(_create(kube, key), name=f"port-forward {key}")
        _registry[entry] = task
    try:
        fwd = await asyncio.shield(task)
        fwd.last_used = loop.time()
    except KubeError:
        if _registry.get(entry) is task:
            _registry.pop(entry, None)
        raise
    return f"{scheme}://127.0.0.1:{fwd.local_port}"


def _dead(task: asyncio.Task[_Forward]) -> bool:
    if not task.done():
        return False
    if task.cancelled() or task.exception() is not None:
        return True
    return task.result().closed


async def _create(kube: Kube, key: ForwardKey) -> _Forward:
    fwd = _Forward(kube, key)
    await fwd.start()
    return fwd


async def close_forward(namespace: str, pod: str, port: int) -> None:
    """Stop the listener(s) for `pod:port` (e.g. when the pod leaves the watch) and their connections."""
    key = ForwardKey(namespace, pod, int(port))
    for entry in [e for e in _registry if e[0] == key]:
        await _close_entry(entry)


async def close_all() -> None:
    """Stop every listener of the running event loop (at shutdown)."""
    for entry in list(_registry):
        await _close_entry(entry)


async def _close_entry(entry: tuple[ForwardKey, int]) -> None:
    task = _registry.pop(entry, None)
    if task is None:
        return
    if task.get_loop() is not asyncio.get_running_loop():
        _close_stale(task)
        return
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return
    if not task.cancelled() and task.exception() is None:
        await task.result().close()


def _close_stale(task: asyncio.Task[_Forward]) -> None:
    """Release the listening socket of a listener whose event loop is gone (tests run one loop per test)."""
    if task.done() and not task.cancelled() and task.exception() is None:
        server = task.result().server
        if server is not None:
            with contextlib.suppress(RuntimeError):
                server.close()


def active_forwards() -> dict[str, str]:
    """{"namespace/pod:port": "127.0.0.1:<local port>"} of the live listeners (for diagnostics and tests)."""
    out: dict[str, str] = {}
    for (key, _), task in _registry.items():
        if task.done() and not task.cancelled() and task.exception() is None and not task.result().closed:
            out[str(key)] = f"127.0.0.1:{task.result().local_port}"
    return out
