"""The pure part of notifications: the two bodies, the backoff schedule, which URLs are refused, and the event
built from a capture's manifest."""

from __future__ import annotations

import dataclasses
import json

import pytest

from memorywatch.notify import (
    SCHEMA,
    CaptureLanded,
    EventType,
    NotifyError,
    SinkKind,
    SinkUrlRefused,
    backoff_delays,
    body_for,
    check_sink_host,
    check_sink_url,
    encode_body,
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
    assert check_sink_url("http://127.0.0.1:9/x", allow_http=True) == "http://127.0.0.1:9/x"
    with pytest.raises(SinkUrlRefused, match=r"notify\.allowHTTP"):
        check_sink_url("http://hooks.example.com/x")


DNS = {
    "hooks.slack.com": ["54.1.2.3"],
    "metadata.internal": ["169.254.169.254"],
    "rebind.example.com": ["54.1.2.3", "10.0.0.7"],
    "localhost": ["127.0.0.1", "::1"],
    "hooks.team.svc.cluster.local": ["10.96.0.10"],
}


def fake_dns(host: str) -> list[str]:
    if host not in DNS:
        raise OSError("no such host")
    return DNS[host]


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("metadata.internal", "link-local"),
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("rebind.example.com", "private (cluster-internal)"),  # any address counts, not the first
        ("hooks.team.svc.cluster.local", "private (cluster-internal)"),
        ("nowhere.example.com", "cannot resolve"),
    ],
)
def test_sink_hosts_follow_the_s3_egress_rule(host: str, why: str) -> None:
    with pytest.raises(SinkUrlRefused) as err:
        check_sink_host(host, (), fake_dns)
    message = str(err.value)
    assert why in message and "notify.allowedCIDRs" in message
    if host.endswith(".com") or host.endswith(".local"):
        assert host not in message  # a sink's host name is not repeated in events and logs


def test_listed_cidrs_let_sinks_in_but_never_metadata_unless_listed() -> None:
    assert check_sink_host("hooks.slack.com", (), fake_dns) == ["54.1.2.3"]
    assert check_sink_host("localhost", ("127.0.0.0/8", "::1/128"), fake_dns) == ["127.0.0.1", "::1"]
    assert check_sink_host("hooks.team.svc.cluster.local", ("10.96.0.0/12",), fake_dns) == ["10.96.0.10"]
    with pytest.raises(SinkUrlRefused, match="link-local"):
        check_sink_host("metadata.internal", ("10.0.0.0/8", "127.0.0.0/8"), fake_dns)


def test_every_event_type_has_its_body_and_title() -> None:
    for type_, name, title in [
        (EventType.BREACH, "LeakDetected", "leak detected"),
        (EventType.CAPTURE, "CaptureLanded", "profiles captured"),
        (EventType.ACTION, "ActionTaken", "action"),
        (EventType.FAILURE, "CaptureFailed", "capture failed"),
    ]:
        event = dataclasses.replace(EVENT, type=type_)
        assert webhook_body(event)["event"] == name
        assert title in slack_body(event)["text"]
    bare = dataclasses.replace(EVENT, type=EventType.BREACH, location="")
    assert "Capture:" not in slack_body(bare)["text"]


def test_the_body_is_cut_to_its_byte_limit() -> None:
    big = dataclasses.replace(EVENT, summary="x" * 900, errors=("e" * 300,) * 10)
    assert len(encode_body(SinkKind.WEBHOOK, big, 100_000)) > 4000
    small = encode_body(SinkKind.WEBHOOK, big, 1500)
    assert len(small) <= 1500 and json.loads(small)["location"] == EVENT.location
    with pytest.raises(NotifyError, match="over the 200-byte limit"):
        encode_body(SinkKind.SLACK, big, 200)


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
