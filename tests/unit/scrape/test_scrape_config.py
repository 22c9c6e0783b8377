"""Target and limit settings: validation a user hits when configuring, and secrets kept out of text."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from memorywatch.scrape import (
    HTTPStatusError,
    Limits,
    ResponseTooLarge,
    ScrapeTimeout,
    TargetConfig,
    TLSConfig,
    Unauthorized,
)
from memorywatch.scrape.config import redact_url
from memorywatch.scrape.transport import sanitize_excerpt

TOKEN = "tok-123-secret"


def test_token_is_not_in_repr_or_str() -> None:
    config = TargetConfig("http://127.0.0.1:6060", bearer_token=TOKEN)
    assert TOKEN not in repr(config) and TOKEN not in str(config)
    assert config.bearer_token == TOKEN


def test_display_name_drops_credentials_in_the_url() -> None:
    config = TargetConfig("http://admin:hunter2@10.0.0.7:6060")
    assert config.display_name == "http://10.0.0.7:6060"
    assert config.safe_url == "http://10.0.0.7:6060"
    assert TargetConfig("http://10.0.0.7:6060", name="checkout-7d9f").display_name == "checkout-7d9f"
    assert redact_url("https://u:p@[::1]:8443/x") == "https://[::1]:8443/x"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "127.0.0.1:6060"}, "must start with http:// or https://"),
        ({"url": "ftp://host"}, "must start with http:// or https://"),
        ({"url": "http://"}, "no host"),
        ({"url": "http://h:1/?debug=1"}, "without query"),
        ({"url": "http://h:1", "tls": TLSConfig()}, "plain http://"),
        ({"url": "http://h:1", "pprof_path": "debug/pprof"}, "must start with '/'"),
        ({"url": "http://h:1", "metrics_path": "metrics"}, "must start with '/'"),
        ({"url": "http://u:p@h:1", "bearer_token": "t"}, "give only one of them"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TargetConfig(**kwargs)  # type: ignore[arg-type]


def test_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="together"):
        TLSConfig(cert_file="/c.pem")


def test_paths_and_loopback() -> None:
    config = TargetConfig("http://127.0.0.5:7000/", pprof_path="/internal/prof/")
    assert config.pprof("") == "/internal/prof/"
    assert config.pprof("heap") == "/internal/prof/heap"
    assert config.url_for("/metrics") == "http://127.0.0.5:7000/metrics"
    assert config.is_loopback and config.port == 7000
    assert TargetConfig("http://localhost:1").is_loopback
    assert TargetConfig("http://[::1]:1").is_loopback
    assert not TargetConfig("http://10.1.2.3:1").is_loopback
    assert TargetConfig("https://pod.ns.svc").port == 443


def test_targets_are_hashable_values() -> None:
    a = TargetConfig("https://h:1", tls=TLSConfig(ca_file="/ca.pem"))
    b = TargetConfig("https://h:1", tls=TLSConfig(ca_file="/ca.pem"))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


def test_limits_are_positive() -> None:
    assert Limits().max_text_bytes == 32 * 1024 * 1024
    with pytest.raises(ValueError, match="total_timeout_seconds"):
        Limits(total_timeout_seconds=0)
    assert dataclasses.replace(Limits(), cpu_profile_seconds=5).cpu_profile_seconds == 5


def test_error_messages_say_what_and_where_and_survive_pickling() -> None:
    timeout = ScrapeTimeout("checkout-1", "/debug/pprof/heap?debug=1", "read", 10)
    assert str(timeout) == (
        "checkout-1: GET /debug/pprof/heap?debug=1: read timeout after 10s: "
        "the target went silent for longer than the read timeout"
    )
    too_large = ResponseTooLarge("t", "/p", "max_text_bytes", 32 * 1024 * 1024)
    assert "32.0 MiB" in str(too_large) and "Limits.max_text_bytes" in str(too_large)
    for err in (
        timeout,
        too_large,
        Unauthorized("t", "/p", "HTTP 401"),
        HTTPStatusError("t", "/p", 502, "bad"),
    ):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err) and copy.path == err.path


def test_body_excerpts_are_one_short_clean_line_without_the_token() -> None:
    body = (
        b"<html><body><h1>502 Bad Gateway</h1>\r\n\x1b[2J<p>upstream said Bearer " + TOKEN.encode() + b"</p>"
    )
    excerpt = sanitize_excerpt(body + b"x" * 5000, TOKEN)
    assert excerpt.startswith("502 Bad Gateway [2J upstream said Bearer [redacted]")
    assert "\x1b" not in excerpt and "\n" not in excerpt and TOKEN not in excerpt
    assert len(excerpt) <= 200
    assert sanitize_excerpt(b"\xff\xfe broken utf-8", None).endswith("broken utf-8")


@pytest.mark.parametrize("token", ["", "two words", "line\nbreak", "tab\there"])
def test_a_token_that_cannot_be_a_header_is_refused_without_being_shown(token: str) -> None:
    with pytest.raises(ValueError, match="value not shown") as caught:
        TargetConfig("http://127.0.0.1:1", bearer_token=token)
    assert not token or token not in str(caught.value)
