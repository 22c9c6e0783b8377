"""The pure part of notifications: the two bodies, the backoff schedule, which URLs are refused, and the event
built from a capture's manifest."""

from __future__ import annotations

import json

import pytest

from memorywatch.notify import (
    SCHEMA,
    CaptureLanded,
    SinkKind,
    SinkUrlRefused,
    backoff_delays,
    body_for,
    check_sink_url,
    event_from_manifest,
    slack_body,
    webhook_body,
)

EVENT = CaptureLanded(
    namespace="shop",
    memorywatch="checkout",
    pod="checkout-0",
    rule="heap-growth",
    kind="HeapGrowth",
    time="2026-12-01T10:00:00Z",
    summary="live heap grew <!channel> & <https://evil.example|click>",
    location="s3://bucket/shop/checkout/checkout-0/20261201T100000Z-heap-growth",
    report="s3://bucket/shop/checkout/checkout-0/20261201T100000Z-heap-growth/report.html",
    files=8,
    errors=("cpu: refused",),
)


def test_the_webhook_body_is_versioned_json() -> None:
    body = webhook_body(EVENT)
    assert body["schema"] == SCHEMA and body["event"] == "CaptureLanded"
    assert body["location"] == EVENT.location and body["report"] == EVENT.report
    assert body["summary"] == EVENT.summary  # JSON needs no escaping beyond its own
    assert json.loads(json.dumps(body)) == body
    long = webhook_body(
        CaptureLanded(**{**EVENT.__dict__, "summary": "x" * 10_000, "errors": ("e" * 999,) * 50})
    )
    assert len(long["summary"]) == 1000 and len(long["errors"]) == 10 and len(long["errors"][0]) == 300


def test_the_slack_body_cannot_ping_or_link() -> None:
    body = slack_body(EVENT)
    assert body is not None and body_for(SinkKind.SLACK, EVENT) == body
    text = body["text"] + json.dumps(body["blocks"])
    assert "<!channel>" not in text and "<https://" not in text
    assert "&lt;!channel&gt;" in body["text"] and "heap-growth" in body["text"] and EVENT.pod in body["text"]
    assert body["blocks"][0]["type"] == "header"


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    assert backoff_delays(5, first_seconds=1, cap_seconds=5, jitter=lambda: 1.0) == [1, 2, 4, 5]
    assert backoff_delays(3, first_seconds=1, cap_seconds=5, jitter=lambda: 0.0) == [0.5, 1.0]
    assert backoff_delays(1, first_seconds=1, cap_seconds=5, jitter=lambda: 9.0) == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "https://"),
        ("ftp://hooks.example.com/x", "https://"),
        ("https://user:pw@hooks.example.com/x", "user:password"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/x", "link-local"),
        ("https://127.0.0.1:8080/x", "loopback"),
        ("https://localhost/x", "localhost"),
        ("https:///x", "no host"),
        ("https://[::1/x", "does not parse"),
    ],
)
def test_refused_urls_say_why_without_quoting_the_url(url: str, why: str) -> None:
    with pytest.raises(SinkUrlRefused) as err:
        check_sink_url(url)
    assert why in str(err.value) and url not in str(err.value)


def test_accepted_urls() -> None:
    assert (
        check_sink_url(" https://hooks.slack.com/services/T0/B0/secret ")
        == "https://hooks.slack.com/services/T0/B0/secret"
    )
    assert (
        check_sink_url("http://127.0.0.1:9/x", allow_http=True, allow_loopback=True) == "http://127.0.0.1:9/x"
    )
    with pytest.raises(SinkUrlRefused):
        check_sink_url("http://169.254.169.254/", allow_http=True, allow_loopback=True)


def test_the_event_comes_from_the_manifest() -> None:
    manifest = {
        "namespace": "shop",
        "memorywatch": "checkout",
        "pod": "checkout-0",
        "rule": "heap-growth",
        "time": "2026-12-01T10:00:00Z",
        "summary": "grew",
        "breaches": [{"kind": "HeapGrowth"}],
        "files": [{"name": "heap.pb.gz"}, {"name": "report.html"}],
        "errors": ["cpu: refused"],
    }
    event = event_from_manifest(manifest, "file:///captures/x/", action="EvictPod")
    assert (
        event.kind == "HeapGrowth" and event.report == "file:///captures/x/report.html" and event.files == 3
    )
    assert event.errors == ("cpu: refused",) and event.action == "EvictPod"
    bare = event_from_manifest({"breaches": ["junk"], "files": "junk"}, "file:///y")
    assert bare.kind == "" and bare.report is None


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(SinkUrlRefused, match="does not parse"):
        check_sink_url("https://hooks.example.com:99999/x")
