"""Connection pooling for many targets: one aiohttp session per TLS setting, shared by every target that has
it, with a few kept-alive connections per target; one SSLContext per TLS setting."""

from __future__ import annotations

import dataclasses
import ssl
import time

import aiohttp

from memorywatch.scrape.config import Limits, TargetConfig, TLSConfig

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


@dataclasses.dataclass(slots=True)
class Origin:
    """The session the targets of one TLS setting share, and what uses it right now."""

    session: aiohttp.ClientSession
    in_flight: int = 0
    last_used: float = 0.0


class ClientPool:
    """HTTP/1.1 connections kept alive per target across intervals.

    Every target with the same TLS setting shares one `aiohttp.ClientSession`, whose connector keeps each
    target's (host, port) connections apart: up to `max_connections_per_target` of them, further requests
    of that target wait for a free one inside their total timeout, and finding a free one is a dictionary
    lookup whatever the number of targets. A session per target cost ~6 KiB more per target (its connector,
    timers and request machinery; measured with tracemalloc, docs/scaling.md). aiohttp closes a connection
    idle for `keepalive_expiry_seconds`, so targets that went away (deleted pods) leave no socket behind,
    and a TLS setting no target has used for that long has its session closed here. One `SSLContext` per
    TLS setting (loading the system CA store costs about 1 MiB and milliseconds; it must not happen per
    target). No proxy from the environment, no cookie jar (a target's Set-Cookie would otherwise grow one),
    no redirects followed (the caller refuses them), no automatic decompression (transport.Body undoes
    Content-Encoding under the byte caps).
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._contexts: dict[TLSConfig | None, ssl.SSLContext] = {}
        self._origins: dict[TLSConfig | None, Origin] = {}
        self._next_sweep = 0.0
        self.buffered = BufferedBytes(limits.max_buffered_bytes)
        self.timeout = aiohttp.ClientTimeout(
            total=None,  # the caller's asyncio.timeout bounds the whole request, body and parsing included
            connect=None,  # waiting for a free connection of the target: bounded by that total only
            sock_connect=limits.connect_timeout_seconds,  # TCP connect plus the TLS handshake
            sock_read=limits.read_timeout_seconds,  # the longest silence between two reads
        )

    def ssl_context(self, tls: TLSConfig | None) -> ssl.SSLContext:
        """The context for this TLS setting; raises OSError/ssl.SSLError if its files cannot be loaded."""
        context = self._contexts.get(tls)
        if context is None:
            context = _ssl_context(tls) if tls is not None else ssl.create_default_context()
            self._contexts[tls] = context
        return context

    async def origin_for(self, target: TargetConfig) -> Origin:
        """The session for `target`'s TLS setting, opened on first use. The caller counts itself in
        `in_flight` while it holds a response, so a session is never closed under a request."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self._limits.keepalive_expiry_seconds
            await self._sweep(now)
        origin = self._origins.get(target.tls)
        if origin is None:
            connector = aiohttp.TCPConnector(
                ssl=self.ssl_context(target.tls),  # used for https:// only; never False (no verification)
                limit=0,  # the scraper bounds the samples in flight; this bounds each target's share
                limit_per_host=self._limits.max_connections_per_target,
                keepalive_timeout=self._limits.keepalive_expiry_seconds,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
                auto_decompress=False,
                trust_env=False,  # a proxy from the environment must never sit between us and a pod
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
            origin = self._origins[target.tls] = Origin(session)
        origin.last_used = now
        return origin

    async def _sweep(self, now: float) -> None:
        idle_before = now - self._limits.keepalive_expiry_seconds
        for key, origin in list(self._origins.items()):
            if origin.in_flight == 0 and origin.last_used < idle_before:
                del self._origins[key]
                await origin.session.close()

    @property
    def origin_count(self) -> int:
        """Open sessions: one per TLS setting in use."""
        return len(self._origins)

    async def aclose(self) -> None:
        origins, self._origins = list(self._origins.values()), {}
        for origin in origins:
            await origin.session.close()


def _ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx
