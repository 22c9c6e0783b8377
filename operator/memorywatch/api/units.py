"""Go-style durations and Kubernetes quantities: parse them from spec strings, format them for messages.

Errors: `UnitError(ValueError)` is the base; `DurationError` and `QuantityError` say which kind of text was
expected. Every message names the offending text and shows a valid example.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "DurationError",
    "QuantityError",
    "UnitError",
    "format_bytes",
    "format_count",
    "format_duration",
    "format_rate",
    "parse_duration",
    "parse_quantity",
]


class UnitError(ValueError):
    """A duration or quantity could not be read."""


class DurationError(UnitError):
    """Text is not a Go-style duration."""


class QuantityError(UnitError):
    """Text is not a Kubernetes quantity."""


# Seconds per Go duration unit (time.ParseDuration accepts exactly these; "µs" in two spellings).
_DURATION_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def _duration_error(text: str, why: str = "") -> DurationError:
    detail = f" ({why})" if why else ""
    return DurationError(
        f"{text!r} is not a duration{detail}: use a number and a unit such as 30s, 15m or 1h"
        " (units: ns, us, ms, s, m, h)"
    )


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Go-style duration such as `300ms`, `30s`, `15m`, `1h30m` or `1.5h`.

    Like Go's time.ParseDuration, a bare number is accepted only for "0". Negative durations are rejected
    because every duration in a MemoryWatch is a length of time.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise _duration_error(str(text), "expected a string")
    if isinstance(text, int | float):
        if text == 0:
            return 0.0
        raise _duration_error(str(text), "a unit is required")
    raw = text
    text = text.strip()
    if not text:
        raise _duration_error(raw, "empty")
    if text.startswith("-"):
        raise _duration_error(raw, "must not be negative")
    if text.startswith("+"):
        text = text[1:]
    if text == "0":
        return 0.0
    pos = 0
    total_seconds = 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            if re.fullmatch(r"\d+(?:\.\d*)?", text[pos:]):
                raise _duration_error(raw, "a unit is required")
            raise _duration_error(raw)
        total_seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not math.isfinite(total_seconds):
        raise _duration_error(raw, "too large")
    return total_seconds


# Kubernetes resource.Quantity suffixes: binary (Ki..Ei), decimal (n, u, m, "", k, M, G, T, P, E).
_BINARY_SUFFIXES: dict[str, float] = {
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_DECIMAL_SUFFIXES: dict[str, float] = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QUANTITY = re.compile(
    r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)"
)


def _quantity_error(text: str, why: str = "") -> QuantityError:
    detail = f" ({why})" if why else ""
    return QuantityError(
        f"{text!r} is not a quantity{detail}: use a number with an optional suffix such as 2000, 256Mi, 1Gi or 1.5G"
    )


def parse_quantity(text: str | int | float) -> float:
    """The value of a Kubernetes quantity: `256Mi`, `1Gi`, `2000`, `1.5G`, `100k`, `500m` (milli), `1e3`.

    Numbers are accepted as they are (YAML turns `minGrowth: 2000` into an int).
    """
    if isinstance(text, bool):
        raise _quantity_error(str(text), "expected a number or a string")
    if isinstance(text, int | float):
        if not math.isfinite(text):
            raise _quantity_error(str(text), "must be finite")
        return float(text)
    if not isinstance(text, str):
        raise _quantity_error(str(text), "expected a number or a string")
    stripped = text.strip()
    if not stripped:
        raise _quantity_error(text, "empty")
    match = _QUANTITY.fullmatch(stripped)
    if match is None:
        raise _quantity_error(text)
    sign, number, exponent, suffix = match.groups()
    value = float(number)
    if exponent is not None:
        value *= 10.0 ** int(exponent[1:])
    elif suffix is not None:
        value *= _BINARY_SUFFIXES.get(suffix) or _DECIMAL_SUFFIXES[suffix]
    if not math.isfinite(value):
        raise _quantity_error(text, "too large")
    return -value if sign == "-" else value


def format_bytes(value: float) -> str:
    """Bytes in binary units for messages: `512 B`, `1.5 KiB`, `256 MiB`, `-3.2 GiB`."""
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    for unit, scale in (("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10)):
        if magnitude >= scale:
            scaled = magnitude / scale
            text = f"{scaled:.0f}" if scaled >= 100 or scaled == int(scaled) else f"{scaled:.1f}"
            return f"{sign}{text} {unit}"
    return f"{sign}{magnitude:.0f} B"


def format_count(value: float) -> str:
    """A count with thousands separators for messages: `2,400`."""
    return f"{round(value):,}"


def format_duration(seconds: float) -> str:
    """Seconds as a Go-style duration for messages: `300ms`, `45s`, `15m`, `1h30m`, `49h` (no days, like Go)."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        milliseconds = round(seconds * 1000)
        return f"{milliseconds}ms" if milliseconds else "0s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)


def format_rate(per_second: float, *, unit: str) -> str:
    """A rate for messages, per minute: `160/min`, `10 MiB/min`; `unit` is "bytes" or anything else (counts)."""
    per_minute = per_second * 60
    if unit == "bytes":
        return f"{format_bytes(per_minute)}/min"
    if abs(per_minute) >= 10 or per_minute == 0:
        return f"{format_count(per_minute)}/min"
    return f"{per_minute:.1f}/min"
