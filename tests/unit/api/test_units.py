"""We test the units a user writes in a MemoryWatch: Go durations and Kubernetes quantities, and the wording
of the errors they see when they get one wrong."""

from __future__ import annotations

import pytest

from memorywatch.api.units import (
    DurationError,
    QuantityError,
    format_bytes,
    format_duration,
    format_rate,
    parse_duration,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("30s", 30),
        ("15m", 900),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2h45m30.5s", 9930.5),
        ("1500us", 0.0015),
        ("1500µs", 0.0015),
        ("10ns", 1e-8),
        ("0", 0),
        (0, 0),
        (" 5m ", 300),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("15x", ""),
        ("", " (empty)"),
        ("-5s", " (must not be negative)"),
        ("10", " (a unit is required)"),
        (10, " (a unit is required)"),
        ("1h 30m", ""),
        ("m", ""),
        ("1d", ""),
    ],
)
def test_duration_errors_say_what_was_expected(text: str, why: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"{str(text)!r} is not a duration{why}: use a number and a unit such as 30s, 15m or 1h (units: ns, us, ms, s, m, h)"
    )
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("2000", 2000),
        (2000, 2000),
        ("1.5G", 1.5e9),
        ("100k", 100_000),
        ("500m", 0.5),
        ("1e3", 1000),
        ("1E3", 1000),
        ("2E", 2e18),
        ("64Ki", 65536),
        (".5Mi", 2**19),
    ],
)
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["256MB", "1 Gi", "Mi", "", "abc", "1.2.3", "1Gi2"])
def test_quantity_errors_say_what_was_expected(text: str) -> None:
    with pytest.raises(
        QuantityError, match=r"is not a quantity.*use a number with an optional suffix such as 2000, 256Mi"
    ):
        parse_quantity(text)


def test_formatting_for_messages() -> None:
    assert format_bytes(256 * 2**20) == "256 MiB"
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"
    assert format_bytes(-3 * 2**10) == "-3 KiB"
    assert format_bytes(512) == "512 B"
    assert format_duration(900) == "15m"
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.3) == "300ms"
    assert format_duration(45) == "45s"
    assert format_rate(160 / 60, unit="goroutines") == "160/min"
    assert format_rate(10 * 2**20 / 60, unit="bytes") == "10 MiB/min"
