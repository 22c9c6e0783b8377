"""One bounded GET against a target: byte caps while streaming, timeouts, and the translation of every
transport failure into exactly one ScrapeError."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import html
import logging
import re
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp

from memorywatch.pprof.errors import BudgetExceeded, PprofError
from memorywatch.scrape.config import Limits, TargetConfig
from memorywatch.scrape.errors import (
    HTTPStatusError,
    MalformedResponse,
    NotFound,
    OverBudget,
    ResponseTooLarge,
    ScrapeError,
    ScrapeTimeout,
    TargetUnreachable,
    TLSFailure,
    Unauthorized,
)
from memorywatch.scrape.pool import BufferedBytes, ClientPool
from memorywatch.workers import WorkerError

# A deadline (event-loop time) shared by requests sent one after the other for one sample: each request
# ends by its own total bound or by this, whichever comes first, so the sample as a whole stays within
# `total_timeout_seconds` however many requests it sends in turn (scraper._one_by_one sets it).
SHARED_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "memorywatch_shared_deadline", default=None
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_EXCERPT_CHARS = 200
_READ_CHUNK_BYTES = 64 * 1024


class _ContentDecoder:
    """Undo Content-Encoding ourselves, chunk by chunk with an output bound, so a compressed body can never
    expand past the cap in one step (an HTTP client's own decoder inflates a whole network chunk at once)."""

    def __init__(self, encoding: str) -> None:
        if encoding in ("", "identity"):
            self._inflate: zlib._Decompress | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    def decode(self, data: bytes, max_out: int) -> bytes:
        """Decode `data`, producing at most `max_out + 1` bytes (enough to see that a cap is crossed)."""
        if self._inflate is None:
            return data
        out = self._inflate.decompress(data, max_out + 1)
        while self._inflate.unconsumed_tail and len(out) <= max_out:
            out += self._inflate.decompress(self._inflate.unconsumed_tail, max_out + 1 - len(out))
        return out


@dataclasses.dataclass
class Body:
    """A response body being streamed under a byte cap. With `truncate_at_cap`, hitting the cap ends the
    stream and sets `truncated`; otherwise it raises ResponseTooLarge naming `limit_name`."""

    response: aiohttp.ClientResponse
    target: str
    path: str
    limit_bytes: int
    limit_name: str
    truncate_at_cap: bool = False
    truncated: bool = False
    bytes_read: int = 0
    buffered: BufferedBytes | None = None

    @property
    def content_type(self) -> str:
        value: str = self.response.headers.get("content-type", "")
        return value.split(";")[0].strip().lower()

    async def chunks(self) -> AsyncIterator[bytes]:
        encoding = self.response.headers.get("content-encoding", "").strip().lower()
        try:
            decoder = _ContentDecoder(encoding)
        except ValueError as exc:
            raise MalformedResponse(self.target, self.path, str(exc)) from None
        async for raw in self.response.content.iter_chunked(_READ_CHUNK_BYTES):
            room = self.limit_bytes - self.bytes_read
            try:
                data = decoder.decode(raw, room)
            except zlib.error as exc:
                raise MalformedResponse(self.target, self.path, f"corrupt {encoding} body: {exc}") from None
            if len(data) > room:
                if not self.truncate_at_cap:
                    raise ResponseTooLarge(self.target, self.path, self.limit_name, self.limit_bytes)
                self.truncated = True
                if room > 0 and (self.buffered is None or self.buffered.take(room)):
                    self.bytes_read += room
                    yield data[:room]
                return
            if self.buffered is not None and not self.buffered.take(len(data)):
                cap = self.buffered.cap
                raise ResponseTooLarge(self.target, self.path, "max_buffered_bytes", cap)
            self.bytes_read += len(data)
            if data:
                yield data

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)

    async def line_batches(self, max_line_bytes: int = 1 << 20) -> AsyncIterator[list[bytes]]:
        """The body as lists of complete lines (bytes, without line ends), one list per network chunk.

        Batches keep the per-line cost to a plain loop in the consumer. A line longer than
        `max_line_bytes` is handed out in pieces, so one endless line cannot pile up in memory before
        the parser gets to reject it.
        """
        pending: list[bytes] = []
        pending_bytes = 0
        async for chunk in self.chunks():
            pieces = chunk.split(b"\n")
            batch: list[bytes] = []
            if len(pieces) > 1:
                pending.append(pieces[0])
                batch.append(b"".join(pending))
                batch.extend(pieces[1:-1])
                pending, pending_bytes = [], 0
            if pieces[-1]:
                pending.append(pieces[-1])
                pending_bytes += len(pieces[-1])
                if pending_bytes > max_line_bytes:
                    batch.append(b"".join(pending))
                    pending, pending_bytes = [], 0
            if batch:
                yield batch
        if pending:
            yield [b"".join(pending)]

    async def lines(self, max_line_bytes: int = 1 << 20) -> AsyncIterator[str]:
        """The body as text lines without their line ends, decoded as UTF-8 (bad bytes replaced)."""
        async for batch in self.line_batches(max_line_bytes):
            for line in batch:
                yield decode_line(line)


def decode_line(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")


async def get(
    pool: ClientPool,
    limits: Limits,
    target: TargetConfig,
    path: str,
    consume: Callable[[Body], Awaitable[T]],
    *,
    params: Mapping[str, str | int] | None = None,
    limit_bytes: int,
    limit_name: str,
    truncate_at_cap: bool = False,
    extra_seconds: float = 0.0,
) -> T:
    """GET `path` of `target` and hand the streamed body to `consume`, all inside the total timeout.

    `extra_seconds` lengthens the read and total bounds for requests where the target is meant to wait
    (`seconds=N`). Whatever goes wrong comes out as one ScrapeError subclass.
    """
    name = target.display_name
    shown_path = path + _query(params)
    total_seconds = limits.total_timeout_seconds + extra_seconds
    headers = None
    if target.bearer_token and not _has_credentials(target.url):
        # TargetConfig refuses a token next to credentials in the URL (sent as Basic auth); aiohttp would
        # refuse both at once with a ValueError, which must never escape as a non-ScrapeError.
        headers = {"Authorization": f"Bearer {target.bearer_token}"}
    try:
        origin = await pool.origin_for(target)
    except (OSError, ssl.SSLError) as exc:
        raise TLSFailure(name, shown_path, f"cannot load the TLS files: {exc}") from None
    timeout = pool.timeout
    if extra_seconds:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=limits.connect_timeout_seconds,
            sock_read=limits.read_timeout_seconds + extra_seconds,
        )
    server_name = target.tls.server_name if target.tls is not None else None
    origin.in_flight += 1
    when = asyncio.get_running_loop().time() + total_seconds
    shared = SHARED_DEADLINE.get()
    if shared is not None:
        when = min(when, shared)
    try:
        async with asyncio.timeout_at(when):
            async with origin.session.get(
                target.url_for(path),
                params=params,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                server_hostname=server_name,
            ) as response:
                await _check_status(response, name, shown_path, target.bearer_token)
                body = Body(response, name, shown_path, limit_bytes, limit_name, truncate_at_cap)
                body.buffered = pool.buffered
                try:
                    return await consume(body)
                finally:
                    pool.buffered.give_back(body.bytes_read)
    except aiohttp.ConnectionTimeoutError:
        raise ScrapeTimeout(name, shown_path, "connect", limits.connect_timeout_seconds) from None
    except aiohttp.ServerTimeoutError:  # also a TimeoutError: caught before the total bound's
        raise ScrapeTimeout(name, shown_path, "read", limits.read_timeout_seconds + extra_seconds) from None
    except TimeoutError:
        raise ScrapeTimeout(name, shown_path, "total", total_seconds) from None
    except BudgetExceeded as exc:
        raise OverBudget(name, shown_path, str(exc), exc.limit_name, exc.limit) from None
    except WorkerError as exc:
        raise OverBudget(name, shown_path, str(exc), exc.limit_name, exc.limit) from None
    except PprofError as exc:
        raise MalformedResponse(name, shown_path, str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise _translate(exc, name, shown_path, target.bearer_token) from None
    except ssl.SSLError as exc:
        raise TLSFailure(name, shown_path, f"TLS failed: {_describe_ssl(exc)}") from None
    except OSError as exc:  # e.g. too many open files while connecting
        raise TargetUnreachable(name, shown_path, f"{type(exc).__name__}: {exc}") from None
    finally:
        origin.in_flight -= 1


def _has_credentials(url: str) -> bool:
    """Whether a base URL carries user:password@ (cheaper than parsing it on every request)."""
    return "@" in url.partition("://")[2].partition("/")[0]


def _query(params: Mapping[str, str | int] | None) -> str:
    if not params:
        return ""
    return "?" + "&".join(f"{k}={v}" for k, v in params.items())


async def _check_status(response: aiohttp.ClientResponse, name: str, path: str, token: str | None) -> None:
    status = response.status
    if status == 200:
        return
    if status in (401, 403):
        raise Unauthorized(name, path, f"HTTP {status}")
    if status == 404:
        raise NotFound(name, path, "HTTP 404")
    if 300 <= status < 400:
        location = response.headers.get("location", "").split("?")[0]
        raise HTTPStatusError(name, path, status, f"redirected to {location}"[:_EXCERPT_CHARS])
    excerpt = b""
    with contextlib.suppress(aiohttp.ClientError):
        async for chunk in response.content.iter_chunked(1024):
            excerpt += chunk
            if len(excerpt) >= 4096:
                break
    raise HTTPStatusError(name, path, status, sanitize_excerpt(excerpt, token))


_TAG = re.compile(r"<[^>]{0,200}>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def sanitize_excerpt(data: bytes, token: str | None) -> str:
    """The start of a body as one printable line: tags dropped, whitespace collapsed, the token redacted."""
    text = data[:4096].decode("utf-8", "replace")
    if token:
        text = text.replace(token, "[redacted]")
    text = html.unescape(_TAG.sub(" ", text))
    text = " ".join(_CONTROL.sub(" ", text).split())
    if token:
        text = text.replace(token, "[redacted]")
    return text[:_EXCERPT_CHARS]


def _translate(exc: aiohttp.ClientError, name: str, path: str, token: str | None) -> ScrapeError:
    ssl_error = _ssl_cause(exc)
    if ssl_error is not None:
        detail = f"TLS handshake failed: {_describe_ssl(ssl_error)}"
        if "WRONG_VERSION_NUMBER" in str(ssl_error) or "wrong version number" in str(ssl_error):
            detail += "; the target seems to serve plain HTTP, use http://"
        return TLSFailure(name, path, detail)
    # Messages may quote a header value, and the Authorization header holds the token.
    message = str(exc) or type(exc).__name__
    if token:
        message = message.replace(token, "[redacted]")
    if isinstance(
        exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError
    ):
        # The response could not be parsed (a bad status line, oversized headers, a broken chunk) or the
        # connection ended before it was complete.
        message = f"the connection broke or the peer does not speak HTTP/1.1: {message}"
    return TargetUnreachable(name, path, message)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, aiohttp.ClientConnectorCertificateError):
            return seen.certificate_error if isinstance(seen.certificate_error, ssl.SSLError) else None
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(seen.os_error, ssl.SSLError):
            return seen.os_error
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe_ssl(err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {err.verify_message}"
    return err.reason or str(err)
