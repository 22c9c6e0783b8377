"""The typed failures of a scrape: one class per thing a user can act on, each message naming target and path.

Messages carry the target's display name and the URL path (never the bearer token, never credentials in
the URL) plus a hint of what to check.
"""

from __future__ import annotations

from typing import Literal

# Waiting for a free connection of a target and sending the (small) request count against the total bound.
TimeoutPhase = Literal["connect", "read", "total"]


class ScrapeError(Exception):
    """A scrape of one target failed. `target` is its display name, `path` the URL path asked for."""

    hint: str = ""

    def __init__(self, target: str, path: str, detail: str) -> None:
        self.target = target
        self.path = path
        self.detail = detail
        message = f"{target}: GET {path}: {detail}"
        if self.hint:
            message += f" ({self.hint})"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keep pickling (multiprocessing, logging handlers) working despite the custom __init__.
        return (_rebuild, (type(self), self.__dict__.copy(), str(self)))


def _rebuild(cls: type[ScrapeError], state: dict[str, object], message: str) -> ScrapeError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class TargetUnreachable(ScrapeError):
    """Connection refused, DNS failure, connection reset or closed before a response."""

    hint = "is the process running and listening on that address?"


class ScrapeTimeout(ScrapeError):
    """The target did not answer in time; `phase` says which bound was hit."""

    def __init__(self, target: str, path: str, phase: TimeoutPhase, timeout_seconds: float) -> None:
        self.phase = phase
        self.timeout_seconds = timeout_seconds
        what = {
            "connect": "no connection within the connect timeout",
            "read": "the target went silent for longer than the read timeout",
            "total": "the whole request took longer than the total timeout",
        }[phase]
        super().__init__(target, path, f"{phase} timeout after {timeout_seconds:g}s: {what}")


class TLSFailure(ScrapeError):
    """The TLS handshake failed: unknown CA, wrong name, plain HTTP on the other side, bad client cert."""

    hint = "check the CA file, the server name and whether the target really serves HTTPS"


class Unauthorized(ScrapeError):
    """401 or 403."""

    hint = "check the bearer token Secret referenced by the endpoint settings"


class NotFound(ScrapeError):
    """404."""

    hint = "is net/http/pprof mounted at the configured pprof path?"

    def __init__(self, target: str, path: str, detail: str) -> None:
        if "/debug/vars" in path or path.rstrip("/").endswith("metrics"):
            # Optional extras, not pprof: say what they are instead of pointing at the pprof path.
            self.hint = "the target does not serve this optional endpoint"
        super().__init__(target, path, detail)


class HTTPStatusError(ScrapeError):
    """Any other non-200 status. `body_excerpt` is the first ~200 sanitized characters of the body."""

    def __init__(self, target: str, path: str, status_code: int, body_excerpt: str) -> None:
        self.status_code = status_code
        self.body_excerpt = body_excerpt
        detail = f"HTTP {status_code}"
        if body_excerpt:
            detail += f": {body_excerpt!r}"
        super().__init__(target, path, detail)


class ResponseTooLarge(ScrapeError):
    """The body went past a byte cap; `limit_name` is the Limits field to raise if the size is legitimate."""

    def __init__(self, target: str, path: str, limit_name: str, limit_bytes: int) -> None:
        self.limit_name = limit_name
        self.limit_bytes = limit_bytes
        super().__init__(
            target,
            path,
            f"response exceeded {limit_name}={limit_bytes} bytes ({limit_bytes / 1048576:.1f} MiB); "
            f"stopped reading. Raise Limits.{limit_name} if this target legitimately serves more",
        )


class OverBudget(ScrapeError):
    """Parsing the body would cost more than its budget: a shape past a limit (millions of profile samples,
    tens of thousands of goroutine groups, a MemStats array of 200,000 entries, an endless line), or a
    parse worker that hit its deadline or memory limit. `limit_name` names the limit (a Limits field, or
    a parse budget), `limit` its value. Only this target's scrape fails; nothing else waits for it."""

    def __init__(self, target: str, path: str, detail: str, limit_name: str, limit: float) -> None:
        self.limit_name = limit_name
        self.limit = limit
        super().__init__(target, path, f"over budget: {detail}")


class NotAGoTarget(ScrapeError):
    """The answer is not what net/http/pprof serves (an HTML page, a JSON API, ...); `seen` says what it was."""

    hint = "is the URL pointing at the Go process's pprof port?"

    def __init__(self, target: str, path: str, seen: str) -> None:
        self.seen = seen
        super().__init__(target, path, f"not a Go net/http/pprof response: got {seen}")


class MalformedResponse(ScrapeError):
    """The body looked like pprof output but could not be parsed: truncated or corrupt profile, gzip bomb."""
