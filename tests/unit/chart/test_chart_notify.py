"""The chart's notify.* values: the defaults and custom values reach `memorywatch run` as flags it accepts, and
nonsense is refused by the values schema."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
from chart_helpers import container

from memorywatch.notify.config import add_notify_arguments, limits_from_args

Render = Callable[..., list[dict[str, Any]]]


def notify_limits(args: list[str]) -> Any:
    notify_args = [
        a for i, a in enumerate(args) if a.startswith("--notify") or args[i - 1].startswith("--notify-")
    ]
    p = argparse.ArgumentParser()
    add_notify_arguments(p)
    ns = p.parse_args(notify_args)
    return ns, limits_from_args(ns)


def test_default_limits_reach_the_operator(render: Render) -> None:
    ns, limits = notify_limits(container(render())["args"])
    assert not ns.notify_disabled
    assert (limits.queue_size, limits.per_watch_queue, limits.workers) == (100, 10, 4)
    assert (limits.request_timeout_seconds, limits.deadline_seconds, limits.attempts) == (10, 120, 5)
    assert limits.max_body_bytes == 16384 and not limits.allow_http and limits.allowed_cidrs == ()


def test_custom_values_reach_the_operator(render: Render) -> None:
    values = {"notify": {"enabled": False, "workers": 2, "allowHTTP": True, "allowedCIDRs": ["10.0.0.0/8"],
                         "timeoutSeconds": 3, "deadlineSeconds": 30}}  # fmt: skip
    ns, limits = notify_limits(container(render(values))["args"])
    assert ns.notify_disabled and limits.workers == 2 and limits.allow_http
    assert limits.allowed_cidrs == ("10.0.0.0/8",) and limits.request_timeout_seconds == 3
    assert limits.deadline_seconds == 30 and limits.connect_timeout_seconds == 3


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"notify": {"queueSize": 0}}, "queueSize"),
        ({"notify": {"workers": 1000}}, "workers"),
        ({"notify": {"allowedCIDRs": ["everything"]}}, "allowedCIDRs"),
        ({"notify": {"url": "https://hooks.example.com"}}, "url"),
    ],
)
def test_nonsense_is_refused(helm_template: Callable[..., Any], values: dict[str, Any], text: str) -> None:
    proc = helm_template(values)
    assert proc.returncode != 0 and text in proc.stderr, proc.stderr
