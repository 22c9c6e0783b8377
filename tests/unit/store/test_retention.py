"""The retention plan: age, watch, namespace and total quotas, oldest first, each watch's newest always kept."""

from __future__ import annotations

from memorywatch.store.retention import Limits, Stored, WatchLimits, plan

DAY = 86400.0


def cap(ns: str, mw: str, t: float, size: int = 100, n: int = 0) -> Stored:
    return Stored(f"{ns}/{mw}/pod/{t:.0f}-{n}", ns, f"{ns}/{mw}", t, size)


def test_no_limits_prune_nothing() -> None:
    p = plan([cap("a", "w", 1)], limits=Limits(), now=10 * DAY, namespace="a", watch="a/w")
    assert (p.prune, p.admitted) == ((), True)


def test_age_prunes_old_captures_but_keeps_each_watchs_newest() -> None:
    stored = [cap("a", "w", 1 * DAY), cap("a", "w", 2 * DAY), cap("b", "v", 1 * DAY)]
    p = plan(stored, limits=Limits(max_age_seconds=DAY), now=10 * DAY, namespace="a", watch="a/w")
    assert p.prune == (stored[0].path,) and p.admitted


def test_a_watch_may_only_lower_the_age() -> None:
    stored = [cap("a", "w", 1 * DAY), cap("a", "w", 8 * DAY), cap("a", "w", 9 * DAY)]
    watch = {"a/w": WatchLimits(max_age_seconds=1.5 * DAY)}
    p = plan(stored, limits=Limits(max_age_seconds=30 * DAY), now=10 * DAY, namespace="a", watch="a/w",
             watch_limits=watch)  # fmt: skip
    assert set(p.prune) == {stored[0].path, stored[1].path}
    longer = {"a/w": WatchLimits(max_age_seconds=100 * DAY)}
    p = plan(stored, limits=Limits(max_age_seconds=5 * DAY), now=10 * DAY, namespace="a", watch="a/w",
             watch_limits=longer)  # fmt: skip
    assert p.prune == (stored[0].path,), "the chart's limit still holds"


def test_namespace_quota_prunes_oldest_of_that_namespace_only() -> None:
    stored = [cap("a", "w", t, 100, 0) for t in (1, 2, 3)] + [cap("b", "v", 0.5, 100)]
    p = plan(stored, limits=Limits(namespace_bytes=200), now=10, namespace="a", watch="a/w")
    assert p.prune == (stored[0].path, stored[1].path) and p.admitted
    assert stored[3].path not in p.prune


def test_total_quota_prunes_oldest_across_namespaces() -> None:
    stored = [cap("a", "w", 1), cap("b", "v", 2), cap("a", "w", 3), cap("b", "v", 4)]
    p = plan(stored, limits=Limits(total_bytes=300), now=10, namespace="a", watch="a/w")
    assert p.prune == (stored[0].path, stored[1].path) and p.admitted


def test_refused_when_only_newest_captures_are_left() -> None:
    stored = [cap("a", "w", 1, 500), cap("a", "x", 2, 500)]
    p = plan(stored, limits=Limits(namespace_bytes=800), now=10, namespace="a", watch="a/w")
    assert (p.prune, p.admitted, p.reason) == ((), False, "NamespaceQuota")
    assert "store.retention.namespaceBytes for namespace a=800" in p.message and "1000 bytes" in p.message
    total = plan(stored, limits=Limits(total_bytes=1000), now=10, namespace="a", watch="a/w")
    assert (total.admitted, total.reason) == (False, "TotalQuota")


def test_watch_byte_cap() -> None:
    stored = [cap("a", "w", t, 100) for t in (1, 2, 3)] + [cap("a", "x", 0.5, 100)]
    p = plan(stored, limits=Limits(), now=10, namespace="a", watch="a/w",
             watch_limits={"a/w": WatchLimits(max_bytes=150)})  # fmt: skip
    assert p.prune == (stored[0].path, stored[1].path) and p.admitted
