"""spec.notify on a real kube-apiserver: defaults filled in (key url, events, rate limit), and each refusal (an
inline URL, the rate limit's floor, an unknown type or event, a duplicate sink, too many sinks) with a message
naming the field and the fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crd.test_crd_validation import crd_installed, create, refusal, with_spec  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e
SINK = {"name": "team", "type": "Slack", "urlSecretRef": {"name": "leak-alerts"}}


def test_notify_defaults(create: Callable[..., dict[str, Any]]) -> None:  # noqa: F811 - the imported fixture
    notify = create(with_spec(notify={"sinks": [SINK]}))["spec"]["notify"]
    assert notify == {
        "sinks": [{"name": "team", "type": "Slack", "urlSecretRef": {"name": "leak-alerts", "key": "url"}}],
        "events": ["Capture", "Action", "Failure"],
        "rateLimit": {"interval": "1m", "burst": 5},
    }


@pytest.mark.parametrize(
    ("notify", "field", "text"),
    [
        (
            {"sinks": [{**SINK, "url": "https://hooks.slack.com/services/T0/B0/x"}]},
            "spec.notify.sinks[0].url",
            "url must not be set: a sink URL is a credential; put it in a Secret",
        ),
        (
            {"sinks": [SINK], "rateLimit": {"interval": "5s"}},
            "spec.notify.rateLimit.interval",
            "notify.rateLimit.interval must be at least 10s",
        ),
        (
            {"sinks": [SINK], "rateLimit": {"burst": 50}},
            "spec.notify.rateLimit.burst",
            "less than or equal to 20",
        ),
        ({"sinks": [{**SINK, "type": "Email"}]}, "spec.notify.sinks[0].type", "Unsupported value"),
        ({"sinks": [SINK], "events": ["Everything"]}, "spec.notify.events[0]", "Unsupported value"),
        ({"sinks": [SINK, SINK]}, "spec.notify.sinks[1]", "Duplicate value"),
        (
            {"sinks": [{**SINK, "name": f"s{i}"} for i in range(6)]},
            "spec.notify.sinks",
            "must have at most 5 items",
        ),
        ({"sinks": []}, "spec.notify.sinks", "should have at least 1 items"),
        (
            {"sinks": [{"name": "team", "type": "Slack"}]},
            "spec.notify.sinks[0].urlSecretRef",
            "Required value",
        ),
    ],
)
def test_bad_notify_is_refused_naming_the_field(
    create: Callable[..., dict[str, Any]],  # noqa: F811 - the imported fixture
    notify: dict[str, Any],
    field: str,
    text: str,
) -> None:
    message = refusal(create, with_spec(notify=notify))
    assert field in message and text in message, message
