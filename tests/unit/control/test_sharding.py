"""Rendezvous ownership and the Lease liveness rule (control/sharding.py): pure, so tested with plain values."""

from __future__ import annotations

import collections

import pytest

from memorywatch.control.sharding import MemberLease, ShardView, live_members, owner, pod_key

KEYS = [pod_key(f"ns-{i % 7}", f"app-{i}") for i in range(5000)]
THREE = ["memorywatch-7c9f-a", "memorywatch-7c9f-b", "memorywatch-7c9f-c"]


def owners(members: list[str]) -> dict[str, str | None]:
    return {k: owner(members, k) for k in KEYS}


def test_ownership_is_deterministic_and_independent_of_member_order() -> None:
    first = owners(THREE)
    assert owners(list(reversed(THREE))) == first
    assert owners(THREE[1:] + THREE[:1]) == first
    # pinned: the hash is stable across processes and Python versions (BLAKE2b, not hash())
    assert owner(THREE, "default/app-0") == owner(THREE, "default/app-0")
    assert {owner(["a", "b"], "ns/x"), owner(["b", "a"], "ns/x")} == {owner(["a", "b"], "ns/x")}


def test_no_member_owns_nothing_one_member_owns_everything() -> None:
    assert owner([], "ns/pod") is None
    assert {owner(["only"], k) for k in KEYS} == {"only"}


def test_balance_within_ten_percent_over_5000_keys_and_3_members() -> None:
    counts = collections.Counter(owners(THREE).values())
    assert set(counts) == set(THREE)
    expected = len(KEYS) / 3
    for member, n in counts.items():
        assert abs(n - expected) < 0.1 * expected, (member, n, counts)


def test_a_member_leaving_moves_only_its_own_keys() -> None:
    before = owners(THREE)
    gone = THREE[1]
    after = owners([m for m in THREE if m != gone])
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == gone}, "only the leaver's keys change owner"
    assert 0.25 * len(KEYS) < len(moved) < 0.42 * len(KEYS)  # about 1/3
    # and its keys spread over both survivors, not all onto one
    assert set(collections.Counter(after[k] for k in moved)) == {THREE[0], THREE[2]}


def test_a_member_joining_takes_about_a_quarter_and_only_for_itself() -> None:
    before = owners(THREE)
    joined = "memorywatch-7c9f-d"
    after = owners([*THREE, joined])
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == joined for k in moved), "a join moves keys only to the new member"
    assert 0.2 * len(KEYS) < len(moved) < 0.3 * len(KEYS)


def test_view_owns_exactly_its_share_and_views_agree() -> None:
    views = [ShardView(me, frozenset(THREE)) for me in THREE]
    for i in range(300):
        owning = [v.me for v in views if v.owns("shop", f"cart-{i}")]
        assert len(owning) == 1, "every pod has exactly one owner among replicas with the same view"
    alone = ShardView.alone("x")
    assert alone.owns("shop", "cart-1") and alone.members == {"x"}


def test_live_members_drop_expired_and_malformed_leases_and_keep_me() -> None:
    now = 1000.0
    leases = [
        MemberLease("a", renew_time=995.0, duration_seconds=15.0),  # live
        MemberLease("b", renew_time=980.0, duration_seconds=15.0),  # expired at 995
        MemberLease("c", renew_time=985.0, duration_seconds=15.0),  # expires exactly now: dead
        MemberLease("d", renew_time=None, duration_seconds=15.0),
        MemberLease("e", renew_time=999.0, duration_seconds=None),
        MemberLease("f", renew_time=999.0, duration_seconds=0.0),
        MemberLease("", renew_time=999.0, duration_seconds=15.0),
    ]
    assert live_members(leases, now, "me") == {"a", "me"}
    assert live_members([], now, "me") == {"me"}, "a replica never sees a view without itself"


def test_a_view_computes_each_owner_once_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from memorywatch.control import sharding

    calls: list[str] = []
    real = sharding.owner

    def counting(members: frozenset[str], key: str) -> str | None:
        calls.append(key)
        return real(members, key)

    monkeypatch.setattr(sharding, "owner", counting)
    view = ShardView("a", frozenset(THREE))
    first = [view.owner("ns", f"p-{i}") for i in range(100)]
    assert [view.owner("ns", f"p-{i}") for i in range(100)] == first
    assert len(calls) == 100, "the second pass is served from the view's cache"
    assert first == [real(THREE, pod_key("ns", f"p-{i}")) for i in range(100)]
    monkeypatch.setattr(sharding, "MAX_CACHED_OWNERS", 50)
    for i in range(100, 300):
        view.owner("ns", f"p-{i}")
    assert len(view._owners) <= 50
    assert view == ShardView("a", frozenset(THREE)), "the cache takes no part in equality"
