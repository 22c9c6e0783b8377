"""Connection pooling for many targets: one httpx client per TLS setting, one small pool per origin."""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import AsyncIterator

import httpx

from memorywatch.scrape.config import Limits, TLSConfig

_USER_AGENT = "memorywatch-scraper"


class BufferedBytes:
    """How many response bytes all requests together hold in memory right now, against one cap: 64 samples
    in flight times 32 MiB of /metrics would otherwise be 2 GiB. A request takes bytes as it reads and gives
    them back when its body has been consumed; the one that would cross the cap fails (ResponseTooLarge
    naming `max_buffered_bytes`) while everyone else's reads go on."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.held = 0
        self.peak = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.cap:
            return False
        self.held += n
        self.peak = max(self.peak, self.held)
        return True

    def give_back(self, n: int) -> None:
        self.held = max(0, self.held - n)


class ClientPool:
    """One httpx.AsyncClient per distinct TLS setting, created on first use and shared by every target
    with that setting. Underneath, each origin (scheme, host, port) gets its own small connection pool
    (see OriginRouter), so connections are kept alive per target across intervals."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._clients: dict[TLSConfig | None, httpx.AsyncClient] = {}
        self.buffered = BufferedBytes(limits.max_buffered_bytes)

    def client_for(self, tls: TLSConfig | None) -> httpx.AsyncClient:
        client = self._clients.get(tls)
        if client is None:
            # One SSLContext per TLS setting, shared by every origin: httpx would otherwise build (and
            # load the system CA store into) a fresh context per origin, about 1 MiB each.
            context = _ssl_context(tls) if tls is not None else ssl.create_default_context()
            router = OriginRouter(context, self._limits)
            client = httpx.AsyncClient(
                transport=router,
                follow_redirects=False,
                trust_env=False,  # a proxy from the environment must never sit between us and a pod
                timeout=httpx.Timeout(
                    connect=self._limits.connect_timeout_seconds,
                    read=self._limits.read_timeout_seconds,
                    write=self._limits.read_timeout_seconds,
                    pool=self._limits.total_timeout_seconds,
                ),
                headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
            )
            self._clients[tls] = client
        return client

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def origin_count(self) -> int:
        return sum(
            router.origin_count
            for client in self._clients.values()
            if isinstance(router := client._transport, OriginRouter)
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


class OriginRouter(httpx.AsyncBaseTransport):
    """Routes each request to a small HTTP/1.1 connection pool of its own origin.

    httpcore's pool does work proportional to all its connections on every request (and squares it when
    pruning idle ones), so one shared pool for a thousand targets spends the CPU on bookkeeping. A pool
    per origin keeps that work constant per request. Pools with nothing in flight for longer than the
    keep-alive expiry are closed, so targets that went away (deleted pods) leave nothing behind.
    """

    def __init__(self, verify: ssl.SSLContext, limits: Limits) -> None:
        self._verify = verify
        self._limits = limits
        self._origins: dict[tuple[bytes, bytes, int | None], _Origin] = {}
        self._next_sweep = 0.0

    @property
    def origin_count(self) -> int:
        return len(self._origins)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self._limits.keepalive_expiry_seconds
            await self._sweep(now)
        origin = self._origins.get(key)
        if origin is None:
            transport = httpx.AsyncHTTPTransport(
                verify=self._verify,
                http1=True,
                http2=False,
                limits=httpx.Limits(
                    max_connections=self._limits.max_connections_per_target,
                    max_keepalive_connections=self._limits.max_connections_per_target,
                    keepalive_expiry=self._limits.keepalive_expiry_seconds,
                ),
            )
            origin = self._origins[key] = _Origin(transport)
        origin.in_flight += 1
        origin.last_used = now
        try:
            response = await origin.transport.handle_async_request(request)
        except BaseException:
            origin.in_flight -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_TrackedStream(response.stream, origin),
            extensions=response.extensions,
        )

    async def _sweep(self, now: float) -> None:
        idle_before = now - self._limits.keepalive_expiry_seconds
        for key, origin in list(self._origins.items()):
            if origin.in_flight == 0 and origin.last_used < idle_before:
                del self._origins[key]
                await origin.transport.aclose()

    async def aclose(self) -> None:
        origins, self._origins = list(self._origins.values()), {}
        for origin in origins:
            await origin.transport.aclose()


@dataclasses.dataclass(slots=True)
class _Origin:
    transport: httpx.AsyncHTTPTransport
    in_flight: int = 0
    last_used: float = 0.0


class _TrackedStream(httpx.AsyncByteStream):
    """A response body that tells its origin when it is done, so an origin is never closed mid-response."""

    def __init__(self, stream: httpx.AsyncByteStream, origin: _Origin) -> None:
        self._stream = stream
        self._origin: _Origin | None = origin

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._origin is not None:
                self._origin.in_flight -= 1
                self._origin = None


def _ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx
