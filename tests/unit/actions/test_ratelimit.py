"""The sliding-window rate limit: cluster-wide and per-namespace caps, expiry, and a robust record format."""

from __future__ import annotations

import pytest

from memorywatch.actions.ratelimit import MAX_RECORDS, RateLimits, Record, admit, decode, encode

LIMITS = RateLimits(window_seconds=60, cluster_max=3, namespace_max=2)


def run(times_ns: list[tuple[float, str]], limits: RateLimits = LIMITS) -> list[bool]:
    """Offer actions at the given (time, namespace) in order; returns which were allowed."""
    records: tuple[Record, ...] = ()
    out = []
    for t, ns in times_ns:
        a = admit(records, ns, t, limits)
        records = a.records
        out.append(a.allowed)
    return out


def test_per_namespace_cap() -> None:
    assert run([(0, "a"), (1, "a"), (2, "a")]) == [True, True, False]


def test_cluster_cap_across_namespaces() -> None:
    assert run([(0, "a"), (1, "b"), (2, "c"), (3, "d")]) == [True, True, True, False]


def test_window_slides() -> None:
    assert run([(0, "a"), (1, "a"), (2, "a"), (61, "a"), (62, "a")]) == [True, True, False, True, True]


def test_refusal_names_the_limit_and_when_to_retry() -> None:
    records = (Record(10, "a"), Record(20, "a"))
    a = admit(records, "a", 30, LIMITS)
    assert (a.allowed, a.reason, a.retry_at) == (False, "NamespaceRateLimited", 70)
    assert "actions.rateLimit.perNamespace=2" in a.message
    full = (Record(10, "a"), Record(20, "b"), Record(25, "c"))
    c = admit(full, "d", 30, LIMITS)
    assert (c.reason, c.retry_at) == ("ClusterRateLimited", 70)


def test_zero_means_no_actions() -> None:
    assert run([(0, "a")], RateLimits(60, 0, 5)) == [False]
    assert run([(0, "a")], RateLimits(60, 5, 0)) == [False]


def test_many_actors_never_exceed_the_limit() -> None:
    # 20 watches in 4 namespaces each asking every second for 10 minutes.
    offers = [(float(t), f"ns{w % 4}") for t in range(600) for w in range(20)]
    allowed = [o for o, ok in zip(offers, run(offers, RateLimits(60, 5, 2)), strict=True) if ok]
    for t, _ in allowed:
        in_window = [a for a in allowed if t - 60 < a[0] <= t]
        assert len(in_window) <= 5
        for ns in {n for _, n in in_window}:
            assert sum(1 for a in in_window if a[1] == ns) <= 2


def test_records_round_trip_and_garbage_is_dropped() -> None:
    records = [Record(1.5, "a"), Record(2.0, "b")]
    assert decode(encode(records)) == records
    for junk in (None, "", "{", '{"a": 1}', '[["x", "a"], [1, 2], [1], 5]'):
        assert decode(junk) == []
    assert len(decode(encode([Record(float(i), "a") for i in range(MAX_RECORDS + 50)]))) == MAX_RECORDS


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="window"):
        RateLimits(window_seconds=0)
    with pytest.raises(ValueError, match="cluster"):
        RateLimits(cluster_max=-1)


def test_one_disruptive_action_per_workload_at_a_time() -> None:
    limits = RateLimits(window_seconds=600, cluster_max=100, namespace_max=100, workload_seconds=30)
    first = admit((), "shop", 100, limits, "Deployment/web")
    assert first.allowed and first.records[-1] == Record(100, "shop", "Deployment/web")
    again = admit(first.records, "shop", 110, limits, "Deployment/web")
    assert (again.allowed, again.reason, again.retry_at) == (False, "WorkloadBusy", 130)
    assert "Deployment/web" in again.message and "10s ago" in again.message
    assert admit(first.records, "shop", 110, limits, "Deployment/api").allowed, "another workload"
    assert admit(first.records, "pay", 110, limits, "Deployment/web").allowed, "the same name elsewhere"
    assert admit(first.records, "shop", 110, limits).allowed, "Scale takes no pod: not serialised"
    assert admit(first.records, "shop", 130, limits, "Deployment/web").allowed, "after the spacing"


def test_two_replicas_deciding_at_once_act_once() -> None:
    """Both read the same records; the first write wins, the second reads again (a 409) and is refused."""
    limits = RateLimits(window_seconds=600, cluster_max=100, namespace_max=100)
    read = ()
    a = admit(read, "shop", 100.0, limits, "Deployment/api")
    b = admit(read, "shop", 100.001, limits, "Deployment/api")
    assert a.allowed and b.allowed, "each alone would pass"
    b_again = admit(a.records, "shop", 100.002, limits, "Deployment/api")  # after the conflict
    assert (b_again.allowed, b_again.reason) == (False, "WorkloadBusy")


def test_the_workload_spacing_is_capped_at_the_window_and_zero_turns_it_off() -> None:
    records = (Record(0, "shop", "Deployment/web"),)
    assert admit(records, "shop", 20, RateLimits(20, 100, 100, 30), "Deployment/web").allowed
    assert admit(records, "shop", 1, RateLimits(600, 100, 100, 0), "Deployment/web").allowed
    with pytest.raises(ValueError, match="per-workload"):
        RateLimits(workload_seconds=-1)


def test_workload_records_round_trip_and_old_records_still_read() -> None:
    records = [Record(1.5, "a", "Deployment/web"), Record(2.0, "b")]
    assert decode(encode(records)) == records
    assert decode('[[1.5, "a"], [2, "b", "StatefulSet/db"], [3, "c", 7]]') == [
        Record(1.5, "a"),
        Record(2.0, "b", "StatefulSet/db"),
    ]
