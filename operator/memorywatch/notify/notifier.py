"""Delivering capture notifications: a bounded queue, a few workers, retries with backoff, and a deadline.

`Notifier.capture_landed(event, sinks)` is what the operator calls after a capture is stored. It never
blocks and never raises: it puts one job per sink on a bounded queue and returns at once. A full queue
drops the new job (logged, counted as `dropped`). Workers post each job with per-attempt timeouts, retry
connection errors, timeouts, 429 and 5xx with exponential backoff, and give up at the job's deadline.
So a slow, failing or hanging sink costs at most `workers` stuck connections and a full queue; it never
delays or loses a capture.

Secrets: the URL is read through `UrlResolver` (the operator's reads the watch namespace's Secret) for each
job and lives only in the worker's frame; logs name the watch, the sink and the Secret, never the URL,
and exception texts are scrubbed of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

import httpx

from memorywatch import metrics
from memorywatch.notify.model import (
    CaptureLanded,
    NotifyError,
    SinkSpec,
    SinkUrlRefused,
    backoff_delays,
    body_for,
    check_sink_url,
)

log = logging.getLogger(__name__)

#: (namespace, Secret name, key) -> the URL; raises NotifyError (e.g. SecretMissing) when it cannot.
UrlResolver = Callable[[str, str, str], Awaitable[str]]
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
    queue_size: int = 100
    workers: int = 2
    attempts: int = 5
    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    request_timeout_seconds: float = 10.0
    deadline_seconds: float = 120.0  # per notification, retries included
    allow_http: bool = False
    allow_loopback: bool = False


@dataclasses.dataclass(frozen=True)
class _Job:
    event: CaptureLanded
    sink: SinkSpec


class Notifier:
    """Fire-and-forget notifications of landed captures. Use `async with Notifier(...)` or start()/close()."""

    def __init__(
        self,
        resolve_url: UrlResolver,
        limits: NotifyLimits | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._resolve = resolve_url
        self.limits = limits or NotifyLimits()
        self._sleep = sleep
        self._jitter = jitter
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=self.limits.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        _hide_sink_requests_in_httpx_logs()
        timeout = httpx.Timeout(
            self.limits.request_timeout_seconds, connect=self.limits.connect_timeout_seconds
        )
        # No redirects (a redirect could lead the operator anywhere) and no proxy from the environment.
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)
        self._workers = [
            asyncio.create_task(self._work(), name=f"notify-{i}") for i in range(self.limits.workers)
        ]

    async def close(self, *, drain_seconds: float = 5.0) -> None:
        """Give queued jobs up to `drain_seconds`, then cancel what is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_seconds)
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

    def capture_landed(self, event: CaptureLanded, sinks: Sequence[SinkSpec]) -> int:
        """Queue one notification per sink; returns how many were queued. Never blocks, never raises."""
        queued = 0
        for sink in sinks:
            try:
                self._queue.put_nowait(_Job(event, sink))
                queued += 1
            except asyncio.QueueFull:
                metrics.NOTIFICATIONS.labels(sink=str(sink.kind).lower(), result="dropped").inc()
                log.warning(
                    "notification queue full (%d): dropped the %s notification of %s/%s sink %s",
                    self.limits.queue_size,
                    event.rule,
                    event.namespace,
                    event.memorywatch,
                    sink.name,
                )
        return queued

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                async with asyncio.timeout(self.limits.deadline_seconds):
                    ok = await self._deliver(job)
            except TimeoutError:
                ok = False
                self._warn(job, f"gave up after the {self.limits.deadline_seconds:g}s deadline")
            except Exception as e:  # a bug here must not kill the worker: later captures still notify
                ok = False
                log.exception("notification worker error for sink %s: %s", job.sink.name, type(e).__name__)
            finally:
                self._queue.task_done()
            metrics.NOTIFICATIONS.labels(
                sink=str(job.sink.kind).lower(), result="sent" if ok else "failed"
            ).inc()

    def _warn(self, job: _Job, why: str) -> None:
        log.warning(
            "cannot notify sink %s (%s, Secret %s/%s key %s) of the capture of %s/%s pod %s: %s",
            job.sink.name,
            job.sink.kind,
            job.event.namespace,
            job.sink.secret_name,
            job.sink.secret_key,
            job.event.namespace,
            job.event.memorywatch,
            job.event.pod,
            why,
        )

    async def _deliver(self, job: _Job) -> bool:
        try:
            url = await self._resolve(job.event.namespace, job.sink.secret_name, job.sink.secret_key)
            url = check_sink_url(
                url, allow_http=self.limits.allow_http, allow_loopback=self.limits.allow_loopback
            )
        except SinkUrlRefused as e:
            self._warn(job, str(e))
            return False
        except NotifyError as e:
            self._warn(job, str(e))
            return False
        body = json.dumps(body_for(job.sink.kind, job.event)).encode()
        delays = backoff_delays(
            self.limits.attempts,
            first_seconds=self.limits.first_backoff_seconds,
            cap_seconds=self.limits.max_backoff_seconds,
            jitter=self._jitter,
        )
        assert self._client is not None, "Notifier.start() was not called"
        for attempt in range(self.limits.attempts):
            why = await self._post(url, body)
            if why is None:
                return True
            retry, reason = why
            if not retry or attempt == self.limits.attempts - 1:
                self._warn(job, f"{reason} (attempt {attempt + 1} of {self.limits.attempts})")
                return False
            log.info("sink %s: %s; retrying in %.1fs", job.sink.name, reason, delays[attempt])
            await self._sleep(delays[attempt])
        return False

    async def _post(self, url: str, body: bytes) -> tuple[bool, str] | None:
        """None when delivered, else (retryable, reason). The response body is never read."""
        assert self._client is not None
        token = _POSTING_TO_SINK.set(True)
        try:
            async with self._client.stream(
                "POST",
                url,
                content=body,
                headers={"Content-Type": "application/json", "User-Agent": "memorywatch"},
            ) as response:
                status = response.status_code
        except httpx.TimeoutException as e:
            return True, f"timed out ({type(e).__name__})"
        except httpx.HTTPError as e:
            return True, f"connection failed ({type(e).__name__}: {_scrub(str(e), url)})"
        finally:
            _POSTING_TO_SINK.reset(token)
        if 200 <= status < 300:
            return None
        return status in RETRYABLE_STATUS, f"the sink answered HTTP {status}"


def _scrub(text: str, url: str) -> str:
    """Remove the URL (and its path and query, which carry Slack's credential) from an error text."""
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
