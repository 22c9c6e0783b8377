"""`spec.notify` read into values: defaults, and each refusal naming the field and the fix; the operator's
notify flags; the token bucket behind the per-watch rate limit (fake clock)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from memorywatch.api.notify_config import (
    DEFAULT_EVENTS,
    MIN_RATE_INTERVAL_SECONDS,
    NotifySinkSpec,
    parse_notify,
)
from memorywatch.api.spec import SpecError, parse_spec
from memorywatch.notify import MIN_INTERVAL_SECONDS, RateLimit, TokenBucket
from memorywatch.notify.config import add_notify_arguments, limits_from_args

BASE = {"selector": {"matchLabels": {"app": "shop"}}, "endpoint": {"port": 6060}}
SINK = {"name": "team", "type": "Slack", "urlSecretRef": {"name": "leak-alerts"}}


def problems_of(raw: Any) -> list[str]:
    problems: list[str] = []
    parse_notify(raw, problems)
    return problems


def test_absent_means_no_notifications_and_defaults_fill_in() -> None:
    assert parse_spec(BASE).notify is None
    spec = parse_spec({**BASE, "notify": {"sinks": [SINK]}}).notify
    assert spec is not None
    assert spec.sinks == (NotifySinkSpec("team", "Slack", "leak-alerts", "url"),)
    assert spec.events == frozenset(DEFAULT_EVENTS) and spec.wants("Capture") and not spec.wants("Breach")
    assert (spec.rate_interval_seconds, spec.rate_burst) == (60.0, 5)
    chosen = parse_spec(
        {
            **BASE,
            "notify": {"sinks": [SINK], "events": ["Breach"], "rateLimit": {"interval": "5m", "burst": 1}},
        }
    ).notify
    assert chosen is not None and chosen.events == {"Breach"} and chosen.rate_interval_seconds == 300


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"sinks": []}, "spec.notify.sinks must list at least one sink"),
        (
            {"sinks": [{**SINK, "url": "https://hooks.slack.com/x"}]},
            "spec.notify.sinks[0].url is not allowed",
        ),
        ({"sinks": [{**SINK, "type": "Email"}]}, "spec.notify.sinks[0].type must be Webhook or Slack"),
        (
            {"sinks": [{"name": "team", "type": "Slack"}]},
            "spec.notify.sinks[0].urlSecretRef.name is required",
        ),
        ({"sinks": [SINK, SINK]}, "spec.notify.sinks[1].name 'team' is used twice"),
        ({"sinks": [{**SINK, "name": "Team!"}]}, "spec.notify.sinks[0].name must be a DNS label"),
        ({"sinks": [SINK] * 6}, "at most 5 are allowed"),
        ({"sinks": [SINK], "events": ["Everything"]}, "spec.notify.events: Everything unknown"),
        (
            {"sinks": [SINK], "rateLimit": {"interval": "1s"}},
            "spec.notify.rateLimit.interval must be between 10s",
        ),
        (
            {"sinks": [SINK], "rateLimit": {"burst": 0}},
            "spec.notify.rateLimit.burst must be an integer from 1",
        ),
        ("yes", "spec.notify must be an object"),
    ],
)
def test_refusals_name_the_field_and_the_fix(raw: Any, expected: str) -> None:
    assert any(expected in p for p in problems_of(raw)), problems_of(raw)
    with pytest.raises(SpecError, match=r"spec\.notify"):
        parse_spec({**BASE, "notify": raw})


def test_the_floor_is_the_same_in_the_spec_reader_and_the_bucket() -> None:
    assert MIN_RATE_INTERVAL_SECONDS == MIN_INTERVAL_SECONDS
    with pytest.raises(ValueError, match="at least 10s"):
        RateLimit(interval_seconds=5)
    with pytest.raises(ValueError, match="between 1 and 20"):
        RateLimit(burst=21)


def test_the_token_bucket_allows_a_burst_then_one_per_interval() -> None:
    bucket = TokenBucket(RateLimit(interval_seconds=60, burst=3), now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(59.0) and bucket.take(60.0) and not bucket.take(61.0)
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False], (
        "refills only up to the burst"
    )
    assert not bucket.take(500.0), "a clock stepping back adds nothing"
    bucket.reconfigure(RateLimit(interval_seconds=10, burst=1), now=1000.0)
    assert not bucket.take(1000.0) and bucket.take(1010.0)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_notify_arguments(p)
    return p.parse_args(list(argv))


def test_the_operator_flags_make_the_limits_and_refuse_nonsense() -> None:
    limits = limits_from_args(
        _args("--notify-workers", "2", "--notify-allow-http", "--notify-allowed-cidr", "127.0.0.0/8")
    )
    assert limits.workers == 2 and limits.allow_http and limits.allowed_cidrs == ("127.0.0.0/8",)
    assert not limits_from_args(_args()).allow_http and limits_from_args(_args()).allowed_cidrs == ()
    with pytest.raises(ValueError, match=r"--notify-queue-size \(Helm notify.queueSize\) must be between"):
        limits_from_args(_args("--notify-queue-size", "0"))
    with pytest.raises(ValueError, match=r"notify\.allowedCIDRs"):
        limits_from_args(_args("--notify-allowed-cidr", "not-a-cidr"))
