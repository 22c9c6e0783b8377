"""MemberLeases when the API server cannot be reached: a real client pointed at a loopback port nobody listens
on (a real connection refused, no mock). The view is kept, the failure is counted, and the retries back off
1, 2, 4 s, never longer than a renewal period."""

from __future__ import annotations

import asyncio
import socket

import pytest
from kubernetes import client as k8s
from prometheus_client import REGISTRY

from memorywatch.control.membership import MemberLeases, lease_name
from memorywatch.control.sharding import ShardView
from memorywatch.k8s import Kube


def refused_kube() -> Kube:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = k8s.Configuration(host=f"http://127.0.0.1:{port}")
    config.retries = 0
    return Kube(k8s.ApiClient(config), instance="replica-a")


def errors() -> float:
    return REGISTRY.get_sample_value("memorywatch_shard_membership_errors_total") or 0.0


async def test_an_unreachable_api_server_keeps_the_last_view_and_counts() -> None:
    m = MemberLeases(refused_kube(), "memorywatch-system", "replica-a", lease_seconds=15)
    assert m.view == ShardView.alone("replica-a"), (
        "before any read the replica owns everything (as unsharded)"
    )
    m.view = ShardView("replica-a", frozenset({"replica-a", "replica-b"}))
    before = errors()
    assert await m.refresh() is False
    assert await m.refresh() is False
    assert m.view.members == {"replica-a", "replica-b"}, "the last view is kept"
    assert m.last_ok is None
    assert errors() == before + 2


async def test_failures_back_off_up_to_the_renewal_period() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 5:
            raise asyncio.CancelledError

    m = MemberLeases(refused_kube(), "ns", "replica-a", lease_seconds=9, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await m.run()
    assert slept == [1.0, 2.0, 3.0, 3.0, 3.0], "1, 2, then capped at a third of the 9 s lease"


def test_settings_are_checked_and_names_bounded() -> None:
    with pytest.raises(ValueError, match="at least 2 seconds"):
        MemberLeases(refused_kube(), "ns", "a", lease_seconds=1)
    assert lease_name("web-7c9f") == "memorywatch-member-web-7c9f"
    assert len(lease_name("x" * 300)) == 253
