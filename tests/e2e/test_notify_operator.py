"""Notifications end to end: the chart installed with helm (the operator fixture of test_operator.py, upgraded
with notify.allowHTTP and notify.allowedCIDRs for a receiver on this machine), a real heap-leaking Go service,
and a real HTTP receiver in this test process on 127.0.0.1 (tests/notify/sink_server.py), reached by the
operator pod.

Aspects: the leak's capture produces exactly one notification at the webhook, with the watch, pod, rule, kind,
summary and capture location of status.captures; a second sink of the same watch whose Secret points at the
cloud metadata address is refused by the egress rule, shown as a Warning NotificationFailed event and
counted (memorywatch_notifications_total{result="failed"}), and delays nothing; the token in the sink URLs
appears in no event, no status and no operator log line.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_harness import http_get
from operator_support import dump, events, get_mw, memorywatch, new_namespace, upgrade_operator, wait_for

# mw_operator is the operator fixture of test_operator.py (helm-installed chart), shared by import.
from test_operator import Operator, _apply, _delete_memorywatches, _deploy, _secret, mw_operator  # noqa: F401

from notify.sink_server import sink_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
HEAP_RULE = {"name": "heap-growth", "kind": "HeapGrowth", "window": "40s", "minGrowth": "16Mi"}


@pytest.fixture(scope="module")
def notifying_operator(mw_operator: Operator) -> Operator:  # noqa: F811 - the fixture imported above
    """The shared operator, allowed to post to http:// sinks on loopback (the receiver below)."""
    op = mw_operator
    upgrade_operator(
        op.cluster, op.core, op.namespace, "notify.allowHTTP=true", "notify.allowedCIDRs={127.0.0.0/8}"
    )
    args = op.pod().spec.containers[0].args
    assert "--notify-allow-http" in args and "127.0.0.0/8" in args, args
    return op


def _metric(op: Operator, name: str, labels: dict[str, str]) -> float:
    code, text = http_get(f"http://{op.pod().status.pod_ip}:9090/metrics", timeout=10.0)
    assert code == 200, text[:500]
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1 : line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def notified(notifying_operator: Operator) -> Iterator[dict[str, Any]]:
    op = notifying_operator
    token = f"T0KEN{uuid.uuid4().hex}"
    n = new_namespace(op.core, "e2e-notify")
    try:
        with sink_server() as receiver:
            _secret(op, n, "leak-alerts", {"url": receiver.url(f"/ok/services/{token}") + "\n"})
            _secret(op, n, "metadata-hook", {"hook": f"http://169.254.169.254/latest/{token}"})
            pods = _deploy(op, n, "leaky", "heap-leak", rate=1 << 20)
            failed_before = _metric(
                op, "memorywatch_notifications_total", {"sink": "slack", "result": "failed"}
            )
            notify = {
                "sinks": [
                    {"name": "team", "type": "Webhook", "urlSecretRef": {"name": "leak-alerts"}},
                    {
                        "name": "metadata",
                        "type": "Slack",
                        "urlSecretRef": {"name": "metadata-hook", "key": "hook"},
                    },
                ]
            }
            _apply(op, n, memorywatch("leaky", "leaky", rules=[HEAP_RULE], notify=notify))
            mw = wait_for(
                lambda: (m := get_mw(op.custom, n, "leaky")).get("status", {}).get("captures") and m,
                240,
                "a capture",
                lambda: dump(get_mw(op.custom, n, "leaky").get("status")),
            )
            wait_for(lambda: receiver.of("ok"), 60, "the webhook notification")
            wait_for(lambda: events(op.core, n, reason="NotificationFailed"), 60, "the failed sink's Warning",
                     lambda: dump([e.message for e in events(op.core, n)]))  # fmt: skip
            wait_for(
                lambda: (
                    _metric(op, "memorywatch_notifications_total", {"sink": "slack", "result": "failed"})
                    > failed_before
                ),
                30,
                "the failure counted",
            )
            mw = get_mw(op.custom, n, "leaky")
            seen = receiver.of("ok")
            log = op.cluster.container_log(op.namespace, op.pod().metadata.name, "memorywatch")
            yield {
                "namespace": n, "pods": pods, "mw": mw, "seen": seen, "token": token, "log": log,
                "events": [e.message for e in events(op.core, n)]
                + [e.message for e in events(op.core, op.namespace)],
            }  # fmt: skip
    finally:
        _delete_memorywatches(op)
        op.core.delete_namespace(n)


def test_a_capture_produces_exactly_one_notification_with_its_facts(notified: dict[str, Any]) -> None:
    seen = notified["seen"]
    assert len(seen) == 1, [s.body for s in seen]
    body, capture = seen[0].body, notified["mw"]["status"]["captures"][-1]
    assert len(notified["mw"]["status"]["captures"]) == 1, "one capture (the cooldown holds the next)"
    assert seen[0].content_type == "application/json"
    assert body["schema"] == "memorywatch.io/capture-notification/v1" and body["event"] == "CaptureLanded"
    assert (body["namespace"], body["memorywatch"]) == (notified["namespace"], "leaky")
    assert body["pod"] == capture["pod"] and body["pod"] in notified["pods"]
    assert (body["rule"], body["kind"]) == ("heap-growth", "HeapGrowth")
    assert body["location"] == capture["location"] and body["location"].startswith("file:///")
    assert body["summary"] == capture["summary"][:1000] and "heap" in body["summary"].lower()
    assert body["time"] == capture["time"] and body["files"] >= 3


def test_a_refused_sink_is_a_warning_and_no_secret_leaks(notified: dict[str, Any]) -> None:
    failed = [m for m in notified["events"] if "notification to sink metadata" in m]
    assert failed and "link-local" in failed[0] and "notify.allowedCIDRs" in failed[0], notified["events"]
    assert "Secret metadata-hook key hook" in failed[0]
    token = notified["token"]
    assert token not in "\n".join(notified["events"])
    assert token not in json.dumps(notified["mw"])
    assert token not in notified["log"]
    assert "cannot notify sink metadata" in notified["log"], notified["log"][-3000:]
