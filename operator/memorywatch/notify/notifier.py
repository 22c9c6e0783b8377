"""Delivering notifications: a bounded queue per watch, a few workers shared fairly, retries with backoff,
a deadline, and the operator's egress rule.

`Notifier.send(event, sinks, ...)` is what the operator calls after a breach, capture, action or failure. It
never blocks and never raises: it appends one job per sink to the watch's own lane and returns at once. A
lane holds at most `per_watch_queue` jobs and all lanes together `queue_size`; beyond that the new job is
dropped (logged, counted as `dropped`, reported to the watch). A lane is one sink of one watch; workers take
lanes round-robin and never two jobs of one lane at once, so a slow or hanging sink delays only its own later
notifications, and never a capture, an action, another sink or another watch (unless every worker is held by
a different hanging sink, each for at most the deadline). Each job: per-attempt timeouts, retries of connection errors,
timeouts, 429 and 5xx with exponential backoff, a deadline, a body of at most `max_body_bytes`, and the
response body never read.

Where it may post: the URL's form (`check_sink_url`) and every address its host resolves to
(`check_sink_host`, the egress rule S3 endpoints follow); the request then goes to the address that was
checked (the name is sent as Host and TLS server name), so a second DNS answer cannot point it elsewhere.

Secrets: the URL is read through `UrlResolver` (the operator's reads the watch namespace's Secret) for each
job and lives only in the worker's frame; logs name the watch, the sink and the Secret, never the URL,
and exception texts are scrubbed of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence

import httpx

from memorywatch import metrics
from memorywatch.notify.model import (
    CaptureLanded,
    NotifyError,
    SinkSpec,
    backoff_delays,
    check_sink_host,
    check_sink_url,
    encode_body,
)
from memorywatch.store.policy import Resolver, system_resolver

log = logging.getLogger(__name__)

#: (namespace, Secret name, key) -> the URL; raises NotifyError (e.g. SecretMissing) when it cannot.
UrlResolver = Callable[[str, str, str], Awaitable[str]]
#: Told (sink, why) when a notification to a sink is dropped or given up; must not block (the watch posts
#: a Warning event in the background). `why` never holds the URL.
FailureHook = Callable[[SinkSpec, str], None]
_Lane = tuple[str, str, str]  # (namespace, MemoryWatch, sink)
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_POSTING_TO_SINK: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "memorywatch_posting_to_sink", default=False
)


class _HideSinkRequests(logging.Filter):
    """httpx logs every request's full URL at INFO; for a sink that URL is the secret, so drop those lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _POSTING_TO_SINK.get()


_HIDE_SINK_REQUESTS = _HideSinkRequests()


def _hide_sink_requests_in_httpx_logs() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _HIDE_SINK_REQUESTS not in logger.filters:
            logger.addFilter(_HIDE_SINK_REQUESTS)


class SecretMissing(NotifyError):
    """The sink's Secret or key does not exist (or cannot be read) in the watch's namespace."""


@dataclasses.dataclass(frozen=True)
class NotifyLimits:
    queue_size: int = 100  # jobs waiting, all watches together
    per_watch_queue: int = 10  # jobs waiting for one watch
    workers: int = 4
    attempts: int = 5
    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    request_timeout_seconds: float = 10.0
    deadline_seconds: float = 120.0  # per notification, retries included
    max_body_bytes: int = 16 * 1024
    allow_http: bool = False
    #: non-public addresses a sink may resolve to (the Helm value notify.allowedCIDRs)
    allowed_cidrs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Job:
    event: CaptureLanded
    sink: SinkSpec
    resolve: UrlResolver
    on_failure: FailureHook | None = None


class Notifier:
    """Fire-and-forget notifications. Use `async with Notifier(...)` or start()/close()."""

    def __init__(
        self,
        resolve_url: UrlResolver | None = None,
        limits: NotifyLimits | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        resolve_host: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._resolve = resolve_url
        self.limits = limits or NotifyLimits()
        self._sleep = sleep
        self._jitter = jitter
        self._resolve_host = resolve_host
        self._verify = verify  # the system's trust store; tests pass their own CA
        self._lanes: dict[_Lane, collections.deque[_Job]] = {}
        self._ready: asyncio.Queue[_Lane] = asyncio.Queue()  # lanes with work and no job in flight
        self._scheduled: set[_Lane] = set()
        self._busy: set[_Lane] = set()
        self._pending = 0
        self._per_watch: collections.Counter[tuple[str, str]] = collections.Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        _hide_sink_requests_in_httpx_logs()
        timeout = httpx.Timeout(
            self.limits.request_timeout_seconds, connect=self.limits.connect_timeout_seconds
        )
        # No redirects (a redirect could lead the operator anywhere) and no proxy from the environment.
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=self._verify
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"notify-{i}") for i in range(self.limits.workers)
        ]

    async def close(self, *, drain_seconds: float = 5.0) -> None:
        """Give queued jobs up to `drain_seconds`, then cancel what is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.join(), drain_seconds)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def join(self) -> None:
        """Wait until every queued job is done (delivered or given up)."""
        await self._idle.wait()

    def capture_landed(self, event: CaptureLanded, sinks: Sequence[SinkSpec]) -> int:
        return self.send(event, sinks)

    def send(
        self,
        event: CaptureLanded,
        sinks: Sequence[SinkSpec],
        *,
        resolve: UrlResolver | None = None,
        on_failure: FailureHook | None = None,
    ) -> int:
        """Queue one notification per sink on the watch's lane; returns how many were queued. Never blocks,
        never raises. `resolve` reads the sink URLs (default: the resolver given at construction)."""
        resolver = resolve or self._resolve
        assert resolver is not None, "Notifier.send needs a resolve function"
        watch = (event.namespace, event.memorywatch)
        queued = 0
        for sink in sinks:
            if (
                self._pending >= self.limits.queue_size
                or self._per_watch[watch] >= self.limits.per_watch_queue
            ):
                self._drop(event, sink, on_failure)
                continue
            key = (*watch, sink.name)
            self._lanes.setdefault(key, collections.deque()).append(_Job(event, sink, resolver, on_failure))
            self._pending += 1
            self._per_watch[watch] += 1
            self._idle.clear()
            queued += 1
            if key not in self._busy and key not in self._scheduled:
                self._scheduled.add(key)
                self._ready.put_nowait(key)
        return queued

    def _drop(self, event: CaptureLanded, sink: SinkSpec, on_failure: FailureHook | None) -> None:
        metrics.NOTIFICATIONS.labels(sink=str(sink.kind).lower(), result="dropped").inc()
        why = (
            f"dropped: the notification queue is full ({self.limits.per_watch_queue} for this watch, "
            f"{self.limits.queue_size} in all; Helm value notify.queueSize)"
        )
        log.warning(
            "%s: the %s notification of %s/%s for sink %s",
            why,
            event.type,
            event.namespace,
            event.memorywatch,
            sink.name,
        )
        _tell(on_failure, sink, why)

    @property
    def pending(self) -> int:
        return self._pending

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            self._scheduled.discard(key)
            lane = self._lanes.get(key)
            if not lane:
                continue
            job = lane.popleft()
            self._busy.add(key)
            try:
                async with asyncio.timeout(self.limits.deadline_seconds):
                    why = await self._deliver(job)
            except TimeoutError:
                why = f"gave up after the {self.limits.deadline_seconds:g}s deadline"
            except Exception as e:  # a bug here must not kill the worker: later notifications still go
                why = f"internal error ({type(e).__name__})"
                log.exception("notification worker error for sink %s: %s", job.sink.name, type(e).__name__)
            finally:
                self._busy.discard(key)
                self._pending -= 1
                self._per_watch[key[:2]] -= 1
                if self._per_watch[key[:2]] <= 0:
                    del self._per_watch[key[:2]]
                if lane:
                    self._scheduled.add(key)
                    self._ready.put_nowait(key)
                elif self._lanes.get(key) is lane:
                    del self._lanes[key]
                if self._pending <= 0:
                    self._idle.set()
            metrics.NOTIFICATIONS.labels(
                sink=str(job.sink.kind).lower(), result="sent" if why is None else "failed"
            ).inc()
            if why is not None:
                self._warn(job, why)
                _tell(job.on_failure, job.sink, why)

    def _warn(self, job: _Job, why: str) -> None:
        log.warning(
            "cannot notify sink %s (%s, Secret %s/%s key %s) of the %s of %s/%s pod %s: %s",
            job.sink.name,
            job.sink.kind,
            job.event.namespace,
            job.sink.secret_name,
            job.sink.secret_key,
            job.event.type,
            job.event.namespace,
            job.event.memorywatch,
            job.event.pod,
            why,
        )

    async def _deliver(self, job: _Job) -> str | None:
        """None when delivered, else why not (never the URL)."""
        try:
            url = await job.resolve(job.event.namespace, job.sink.secret_name, job.sink.secret_key)
            url = check_sink_url(url, allow_http=self.limits.allow_http)
            parsed = httpx.URL(url)
            addresses = await asyncio.to_thread(
                check_sink_host, parsed.host, self.limits.allowed_cidrs, self._resolve_host
            )
            body = encode_body(job.sink.kind, job.event, self.limits.max_body_bytes)
        except NotifyError as e:
            return str(e)
        delays = backoff_delays(
            self.limits.attempts,
            first_seconds=self.limits.first_backoff_seconds,
            cap_seconds=self.limits.max_backoff_seconds,
            jitter=self._jitter,
        )
        assert self._client is not None, "Notifier.start() was not called"
        for attempt in range(self.limits.attempts):
            failed = await self._post(parsed, addresses[0], body)
            if failed is None:
                return None
            retry, reason = failed
            if not retry or attempt == self.limits.attempts - 1:
                return f"{reason} (attempt {attempt + 1} of {self.limits.attempts})"
            log.info("sink %s: %s; retrying in %.1fs", job.sink.name, reason, delays[attempt])
            await self._sleep(delays[attempt])
        return "no attempt made"

    async def _post(self, url: httpx.URL, address: str, body: bytes) -> tuple[bool, str] | None:
        """None when delivered, else (retryable, reason). Connects to `address` (checked by the egress rule),
        naming the URL's host in Host and TLS SNI/verification. The response body is never read."""
        assert self._client is not None
        pinned = url.copy_with(host=address)
        host_header = url.netloc.decode("ascii", "replace")
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        token = _POSTING_TO_SINK.set(True)
        try:
            async with self._client.stream(
                "POST",
                pinned,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "memorywatch",
                    "Host": host_header,
                },
                extensions=extensions,
            ) as response:
                status = response.status_code
        except httpx.TimeoutException as e:
            return True, f"timed out ({type(e).__name__})"
        except httpx.HTTPError as e:
            return True, f"connection failed ({type(e).__name__}: {_scrub(str(e), str(url), str(pinned))})"
        finally:
            _POSTING_TO_SINK.reset(token)
        if 200 <= status < 300:
            return None
        return status in RETRYABLE_STATUS, f"the sink answered HTTP {status}"


def _tell(hook: FailureHook | None, sink: SinkSpec, why: str) -> None:
    if hook is None:
        return
    try:
        hook(sink, why)
    except Exception as e:  # noqa: BLE001 - reporting must never stop delivery
        log.warning("the failure report for sink %s failed: %s", sink.name, type(e).__name__)


def _scrub(text: str, *urls: str) -> str:
    """Remove the URLs (and their paths and queries, which carry Slack's credential) from an error text."""
    for url in urls:
        parts = httpx.URL(url)
        for secret in (
            url,
            str(parts.raw_path, "ascii", "replace"),
            parts.path,
            str(parts.query, "ascii", "replace"),
        ):
            if secret and secret not in ("/", ""):
                text = text.replace(secret, "<sink url>")
    return text[:300]
