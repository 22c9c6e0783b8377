"""The guardrails parse_spec enforces again (a spec may come from a file or an older CRD)."""

from __future__ import annotations

from typing import Any

import pytest

from memorywatch.api.spec import SpecError, parse_spec


def spec(**over: Any) -> dict[str, Any]:
    return {"selector": {"matchLabels": {"app": "a"}}, "endpoint": {"port": 6060}, **over}


def problems(s: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as e:
        parse_spec(s)
    return str(e.value)


def test_selector_needs_a_positive_match() -> None:
    only_negative = {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"},
                                          {"key": "y", "operator": "NotIn", "values": ["z"]}]}  # fmt: skip
    assert "at least one positive match" in problems(spec(selector=only_negative))
    exists = {"matchExpressions": [{"key": "x", "operator": "Exists"}]}
    assert parse_spec(spec(selector=exists)).selector.match_expressions[0].operator == "Exists"


@pytest.mark.parametrize("cooldown", ["0", "0s", "30s", "59s"])
def test_action_cooldown_has_a_floor(cooldown: str) -> None:
    assert "spec.action.cooldown must be at least 1m" in problems(
        spec(action={"type": "EvictPod", "cooldown": cooldown})
    )


def test_action_cooldown_at_the_floor_is_fine() -> None:
    assert parse_spec(spec(action={"type": "EvictPod", "cooldown": "1m"})).action.cooldown_seconds == 60


def test_bearer_token_needs_https_unless_explicitly_allowed() -> None:
    token = {"bearerTokenSecretRef": {"name": "t"}}
    assert "needs spec.endpoint.scheme: https" in problems(spec(endpoint={"port": 6060, **token}))
    assert parse_spec(spec(endpoint={"port": 6060, "scheme": "https", **token})).endpoint.bearer_token_secret
    allowed = parse_spec(spec(endpoint={"port": 6060, "allowInsecureBearerToken": True, **token}))
    assert allowed.endpoint.allow_insecure_bearer_token and allowed.endpoint.scheme == "http"


def test_capture_retention_is_read() -> None:
    s = parse_spec(spec(capture={"retention": {"maxAge": "48h", "maxBytes": "500Mi"}}))
    assert (s.capture.retention_max_age_seconds, s.capture.retention_max_bytes) == (48 * 3600, 500 * 2**20)
    default = parse_spec(spec())
    assert (default.capture.retention_max_age_seconds, default.capture.retention_max_bytes) == (None, None)
    assert "spec.capture.retention.maxBytes" in problems(spec(capture={"retention": {"maxBytes": "lots"}}))
