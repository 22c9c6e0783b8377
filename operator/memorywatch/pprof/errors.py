"""The typed errors every parser in this package raises, each saying what was expected and what was seen."""

from __future__ import annotations

_SNIPPET_CHARS = 60


def snippet(data: str | bytes, limit: int = _SNIPPET_CHARS) -> str:
    """The first `limit` characters of `data`, with control and non-ASCII characters escaped.

    The text came from a remote process and ends up in logs, events and status messages, so it must not
    carry terminal escapes or newlines, and must stay short.
    """
    raw = data[: limit * 4]
    text = (raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw).lstrip()
    if not text:
        return "<empty>"
    cut = text[:limit].encode("ascii", errors="backslashreplace").decode("ascii")
    cut = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cut)
    return f'"{cut}"' + ("…" if len(text) > limit else "")


class PprofError(Exception):
    """Something a Go process served could not be read as what it claimed to be."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take other constructor arguments; rebuild from the state so errors cross processes.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[PprofError], message: str, state: dict[str, object]) -> PprofError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


def _described(expected: str, seen: str | bytes, detail: str | None) -> str:
    message = f"expected {expected}, saw {snippet(seen)}"
    return f"{message} ({detail})" if detail else message


class NotPprofIndex(PprofError):
    """The page is not the net/http/pprof index (wrong path, another server, a login page, ...)."""

    def __init__(self, seen: str | bytes, detail: str | None = None) -> None:
        super().__init__(_described("the net/http/pprof index page", seen, detail))


class MalformedText(PprofError):
    """A heap or goroutine text profile is not what runtime/pprof prints."""

    def __init__(self, expected: str, seen: str | bytes, detail: str | None = None) -> None:
        super().__init__(_described(expected, seen, detail))


class MalformedJSON(PprofError):
    """The expvar body is not a JSON object."""

    def __init__(self, seen: str | bytes, detail: str | None = None) -> None:
        super().__init__(_described("an expvar JSON object", seen, detail))


class MalformedMetrics(PprofError):
    """The body is not Prometheus text exposition."""

    def __init__(self, seen: str | bytes, detail: str | None = None) -> None:
        super().__init__(_described("Prometheus text exposition", seen, detail))


class ProfileError(PprofError):
    """A pprof protobuf profile could not be read."""


class ProfileTruncated(ProfileError):
    """The gzip stream ends before its end marker: the transfer was cut short."""


class ProfileCorrupt(ProfileError):
    """The bytes are not a valid (gzipped) pprof profile."""


class ProfileTooLarge(ProfileError):
    """The profile decompresses to more than the caller allowed (possibly a gzip bomb)."""


class SampleTypeMissing(ProfileError):
    """A profile lacks the sample type a diff asked for (e.g. `inuse_space` in a goroutine profile)."""


class BudgetExceeded(PprofError):
    """The input has a shape past a parse budget (millions of samples, tens of thousands of goroutine
    groups, a MemStats array of 200,000 entries): refused before it costs the operator memory or time.

    `limit_name` names the budget (a `ParseBudget` field), `limit` its value, `seen` what the input had."""

    def __init__(self, what: str, limit_name: str, limit: int, seen: int | None = None) -> None:
        seen_text = f"saw {seen}" if seen is not None else "saw more"
        super().__init__(
            f"expected at most {limit} {what}, {seen_text} (limit {limit_name}; refused as too large to parse)"
        )
        self.limit_name = limit_name
        self.limit = limit
        self.seen = seen
