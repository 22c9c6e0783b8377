"""The scale test's pure parts (tests/e2e/scale_support.py): how a pod's scrapes over a window are bucketed
against window / interval, and how the API server's request counters are read."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "e2e"))

from scale_support import ScaleConfig, classify, request_counts


def test_one_replica_at_the_interval_is_counted_at_interval() -> None:
    c = classify({"a": 10, "b": 3}, {"a": 18, "b": 12}, seconds=24.0, interval=3.0)
    assert c.expected == 8.0
    assert (c.at_interval, c.zero, c.low, c.high) == (2, (), (), ())
    assert c.per_pod == {"a": 8, "b": 9}


def test_two_replicas_on_a_pod_double_its_count() -> None:
    c = classify({"a": 0, "b": 0}, {"a": 16, "b": 8}, seconds=24.0, interval=3.0)
    assert c.high == ("a",) and c.at_interval == 1


def test_unscraped_and_lagging_pods_are_told_apart() -> None:
    c = classify({"a": 5, "b": 5, "c": 5}, {"a": 5, "b": 8, "c": 9}, seconds=24.0, interval=3.0)
    assert c.zero == ("a",) and c.low == ("b",) and c.at_interval == 1  # 3 < 4 is below half; 4 is not


def test_a_pod_new_in_the_second_snapshot_counts_from_zero() -> None:
    c = classify({}, {"a": 8}, seconds=24.0, interval=3.0)
    assert (
        c.at_interval == 1 and "1 pods over 24 s (expected 8.0 scrapes each): 1 at the interval" in c.line()
    )


def test_request_counts_sum_every_client_and_split_by_verb_and_resource() -> None:
    text = """# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 7
apiserver_request_total{code="409",component="apiserver",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 2
# TYPE other_total counter
other_total 99
"""
    assert request_counts(text) == {"total": 10.0, "PUT leases": 8.0, "LIST pods": 2.0}


def test_every_tenth_pod_of_each_watch_leaks() -> None:
    cfg = ScaleConfig(watches=2, leak_every=10)
    leaking = [i for i in range(40) if cfg.kind(i) == "heap-leak"]
    assert leaking == [18, 19, 38, 39]  # two per watch: pods 18 and 38 of w0, 19 and 39 of w1
    assert {cfg.kind(i) for i in range(40)} == {"heap-leak", "healthy"}
