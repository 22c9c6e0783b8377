"""The MemoryCapture resource, pure parts: its name, its body from a capture manifest, the finalizer's decisions
and the retention consistency check."""

from __future__ import annotations

import re
from typing import Any

import pytest

from memorywatch.api.capture_object import (
    FINALIZER,
    GIVE_UP_SECONDS,
    LABEL_WATCH,
    LABEL_WATCH_UID,
    RETRY_MAX_SECONDS,
    DeleteFiles,
    GiveUp,
    KeepFiles,
    Owner,
    Retry,
    after_failure,
    build_body,
    capture_name,
    capture_path,
    orphaned,
    plan_deletion,
    s3_json,
    store_spec,
)
from memorywatch.api.spec import parse_spec

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
VOLUME = "/var/lib/memorywatch/captures"
PATH = "shop/checkout/checkout-7d9f-x/20261125T174512Z-heap-growth"
LOCATION = f"file://{VOLUME}/{PATH}"
OWNER = Owner("shop", "checkout", "0b7c1d2e-1111-2222-3333-444455556666")


def manifest(**over: Any) -> dict[str, Any]:
    """A manifest shaped as engine/capture.py writes it."""
    m: dict[str, Any] = {
        "schemaVersion": 1,
        "kind": "MemoryWatchCapture",
        "namespace": "shop",
        "memorywatch": "checkout",
        "pod": "checkout-7d9f-x",
        "time": "2026-11-25T17:45:12Z",
        "rule": "heap-growth",
        "breaches": [{"rule": "heap-growth", "kind": "HeapGrowth", "time": 1.0, "message": "m", "evidence": {}}],
        "summary": "live heap grew 12Mi in 10m; top heap growth main.leak +11.5 MiB",
        "heap": {
            "topGrowth": [
                {"function": f"main.f{i}", "file": "main.go", "line": i, "inuseBytesDelta": 1000 - i,
                 "inuseBytes": 2000, "stack": ["a", "b"]}
                for i in range(15)
            ],
            "comparedTo": "baseline",
        },
        "goroutines": {"total": 40, "topGrowth": [
            {"function": "main.worker", "before": 2, "after": 30, "delta": 28, "stack": ["x"], "labels": {}}
        ]},
        "memstatsSeries": [{"time": 1.0}],
        "files": [
            {"name": "heap.pb.gz", "size": 2048, "sha256": "a" * 64, "format": "pprof"},
            {"name": "goroutine.txt", "size": 1024, "sha256": "b" * 64, "format": "text"},
        ],
        "errors": ["goroutine-stacks: refused"],
    }  # fmt: skip
    m.update(over)
    return m


def body(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "location": LOCATION,
        "owner": OWNER,
        "pod_uid": "pod-uid-1",
        "stored_in": "primary",
        "s3": None,
        "action_type": "None",
    }
    args.update(kw)
    return build_body(manifest(), **args)


def test_name_is_a_short_dns_label_and_differs_per_location() -> None:
    name = capture_name("checkout-7d9f-x", "heap-growth", "2026-11-25T17:45:12Z", LOCATION)
    assert DNS_LABEL.match(name) and len(name) <= 63
    assert name.startswith("checkout-7d9f-x-heap-growth-20261125t174512-")
    assert name == capture_name("checkout-7d9f-x", "heap-growth", "2026-11-25T17:45:12Z", LOCATION)
    assert name != capture_name("checkout-7d9f-x", "heap-growth", "2026-11-25T17:45:12Z", LOCATION + "-1a2b")


@pytest.mark.parametrize(
    ("pod", "rule", "when"),
    [
        ("p" * 253, "r" * 63, "2026-11-25T17:45:12Z"),
        ("a.b.c-" * 40, "Heap_Growth!!", "not a time"),
        ("", "", ""),
        ("---", "...", "2026-11-25T17:45:12+02:00"),
        ("UPPER.case", "rule/with/slashes", "2026-11-25T17:45:12Z"),
    ],
)
def test_name_stays_valid_for_any_input(pod: str, rule: str, when: str) -> None:
    name = capture_name(pod, rule, when, LOCATION)
    assert DNS_LABEL.match(name), name
    assert len(name) <= 63


def test_body_from_manifest() -> None:
    b = body(action_type="EvictPod")
    meta, spec = b["metadata"], b["spec"]
    assert b["kind"] == "MemoryCapture" and meta["namespace"] == "shop"
    assert meta["finalizers"] == [FINALIZER]
    assert meta["labels"] == {LABEL_WATCH_UID: OWNER.uid, LABEL_WATCH: "checkout"}
    (ref,) = meta["ownerReferences"]
    assert ref["kind"] == "MemoryWatch" and ref["uid"] == OWNER.uid and ref["controller"] is True
    assert spec["pod"] == "checkout-7d9f-x" and spec["podUID"] == "pod-uid-1"
    assert spec["rule"] == "heap-growth" and spec["kind"] == "HeapGrowth"
    assert spec["time"] == "2026-11-25T17:45:12Z"
    assert len(spec["heapGrowth"]) == 10 and "stack" not in spec["heapGrowth"][0]
    assert spec["goroutineGrowth"] == [{"function": "main.worker", "before": 2, "after": 30, "delta": 28}]
    assert spec["files"][0] == {"name": "heap.pb.gz", "size": 2048, "sha256": "a" * 64, "format": "pprof"}
    assert spec["files"][-1]["name"] == "manifest.json"
    assert spec["totalBytes"] == 3072 and spec["size"] == "3 files, 3 KiB"
    assert spec["storage"] == {"location": LOCATION, "storedIn": "primary", "path": PATH}
    assert spec["errors"] == ["goroutine-stacks: refused"]
    assert b["status"]["action"] == {"type": "EvictPod", "result": "Pending", "message": ""}


def test_body_of_a_long_watch_name_has_no_name_label_and_keeps_s3_settings_only_for_the_primary() -> None:
    owner = Owner("shop", "w" * 200, OWNER.uid)
    s3 = {"bucket": "evidence", "credentialsSecretRef": {"name": "s3-creds"}}
    b = body(owner=owner, s3=s3, location="s3://evidence/mw/" + PATH)
    assert LABEL_WATCH not in b["metadata"]["labels"]
    assert b["spec"]["storage"]["s3"] == s3
    assert "s3" not in body(s3=s3, stored_in="fallback")["spec"]["storage"]


def test_s3_settings_round_trip_through_the_watch_spec_parser() -> None:
    spec = parse_spec(
        {
            "selector": {"matchLabels": {"app": "x"}},
            "endpoint": {"port": 6060},
            "capture": {"storage": {"s3": {"bucket": "evidence", "prefix": "mw", "endpoint": "http://127.0.0.1:9000",
                                           "credentialsSecretRef": {"name": "s3-creds"}}}},
        }
    )  # fmt: skip
    assert spec.capture.s3 is not None
    again = parse_spec(store_spec(s3_json(spec.capture.s3)))
    assert again.capture.s3 == spec.capture.s3
    assert parse_spec(store_spec(None)).capture.s3 is None


@pytest.mark.parametrize(
    ("location", "path"),
    [
        (LOCATION, PATH),
        ("s3://bucket/prefix/deeper/" + PATH, PATH),
        ("file:///shop/checkout/pod", None),
        (f"file://{VOLUME}/shop/../x/y/z", None),
        ("http://example.com/" + PATH, None),
        (LOCATION + "?x=1", None),
        ("", None),
    ],
)
def test_capture_path(location: str, path: str | None) -> None:
    assert capture_path(location) == path


def test_deletion_plan_for_the_volume() -> None:
    assert plan_deletion("shop", {"storage": {"location": LOCATION}}, VOLUME) == DeleteFiles(
        "file", PATH, LOCATION, None
    )


@pytest.mark.parametrize(
    ("namespace", "location", "why"),
    [
        ("other", LOCATION, "not in namespace other"),
        ("shop", f"file:///etc/{PATH}", "not in the operator's volume"),
        ("shop", f"file://{VOLUME}/shop", "not in namespace shop"),
        ("shop", "", "not a capture folder"),
    ],
)
def test_deletion_plan_refuses_what_is_not_this_namespaces_capture(
    namespace: str, location: str, why: str
) -> None:
    plan = plan_deletion(namespace, {"storage": {"location": location}}, VOLUME)
    assert isinstance(plan, KeepFiles) and why in plan.reason


def test_deletion_plan_for_s3_carries_the_recorded_settings() -> None:
    loc = "s3://evidence/mw/" + PATH
    plan = plan_deletion("shop", {"storage": {"location": loc, "s3": {"bucket": "evidence"}}}, VOLUME)
    assert plan == DeleteFiles("s3", PATH, loc, {"bucket": "evidence"})
    assert isinstance(plan_deletion("shop", {"storage": "hostile"}, VOLUME), KeepFiles)


def test_after_failure_backs_off_then_gives_up() -> None:
    delays = []
    for retry in range(12):
        outcome = after_failure(
            "endpoint unreachable", retry=retry, elapsed_seconds=retry * 60.0, location=LOCATION
        )
        assert isinstance(outcome, Retry) and "endpoint unreachable" in outcome.message
        delays.append(outcome.delay_seconds)
    assert delays[:3] == [5.0, 10.0, 20.0] and max(delays) == RETRY_MAX_SECONDS
    assert delays == sorted(delays)
    final = after_failure(
        "endpoint unreachable", retry=99, elapsed_seconds=GIVE_UP_SECONDS, location=LOCATION
    )
    assert isinstance(final, GiveUp) and LOCATION in final.message and "by hand" in final.message


def _obj(
    name: str, location: str, created: str = "2026-11-25T17:00:00Z", deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": {"storage": {"location": location}}}


def test_orphaned_only_old_objects_in_this_store_whose_files_are_gone() -> None:
    now = 1_795_000_000.0  # 2026-11-18; creation times below are relative to it
    import datetime as dt

    def ts(seconds_ago: float) -> str:
        return dt.datetime.fromtimestamp(now - seconds_ago, dt.UTC).isoformat().replace("+00:00", "Z")

    root = f"file://{VOLUME}"
    objects = [
        _obj("kept", f"{root}/{PATH}", ts(600)),
        _obj("pruned", f"{root}/{PATH}-2", ts(600)),
        _obj("young", f"{root}/{PATH}-3", ts(10)),
        _obj("elsewhere", f"s3://bucket/{PATH}", ts(600)),
        _obj("deleting", f"{root}/{PATH}-4", ts(600), deleting=True),
        _obj("garbled", f"{root}/{PATH}-5", "yesterday"),
    ]
    stored = {f"{root}/{PATH}"}
    assert orphaned(objects, stored, [root], now=now, grace=120.0) == ["pruned"]
