"""The Secret cache (TTL, stale on failure, spaced retries) and resolving pods into targets."""

from __future__ import annotations

import pytest
from tests.unit.control.fakes import FakeClock, FaultInjectingKube, no_close, pod, refuse_forward

from memorywatch.api.spec import parse_spec
from memorywatch.control.resolve import TargetResolver
from memorywatch.control.secrets import SecretCache
from memorywatch.k8s import ApiUnavailable, NotFoundError

SEL = {"matchLabels": {"app": "shop"}}


async def test_ttl_then_stale_on_failure_then_fresh_again() -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    kube.secrets[("ns", "s")] = {"k": "v1"}
    cache = SecretCache(kube, clock, ttl_seconds=60, retry_seconds=10, max_stale_seconds=300)
    assert (await cache.get("ns", "s", "k")).value == "v1"
    assert (await cache.get("ns", "s", "k")).value == "v1" and kube.secret_reads == 1

    clock.advance(60)
    kube.secrets_fail_until = clock() + 30
    got = await cache.get("ns", "s", "k")
    assert got.value == "v1" and isinstance(got.stale_error, ApiUnavailable)
    await cache.get("ns", "s", "k")
    assert kube.secret_reads == 2, "no second read within retry_seconds"
    clock.advance(10)
    await cache.get("ns", "s", "k")
    assert kube.secret_reads == 3

    clock.advance(30)
    kube.secrets[("ns", "s")] = {"k": "v2"}
    got = await cache.get("ns", "s", "k")
    assert (got.value, got.stale_error) == ("v2", None)


async def test_no_value_known_raises_and_stale_values_expire() -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    cache = SecretCache(kube, clock, ttl_seconds=60, max_stale_seconds=120)
    with pytest.raises(NotFoundError):
        await cache.get("ns", "missing", "k")
    kube.secrets[("ns", "s")] = {"k": "v"}
    await cache.get("ns", "s", "k")
    kube.secrets_fail_until = float("inf")
    clock.advance(119)
    assert (await cache.get("ns", "s", "k")).stale_error is not None
    clock.advance(1)
    with pytest.raises(ApiUnavailable):
        await cache.get("ns", "s", "k")


async def test_value_is_not_in_repr() -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    kube.secrets[("ns", "s")] = {"k": "hunter2"}
    got = await SecretCache(kube, clock).get("ns", "s", "k")
    assert "hunter2" not in repr(got)


async def test_port_forward_targets_never_read_proc_rss() -> None:
    clock = FakeClock()
    forwarded: list[tuple[str, str, int, str]] = []

    async def forward(namespace: str, pod_name: str, port: int, scheme: str) -> str:
        forwarded.append((namespace, pod_name, port, scheme))
        return "http://127.0.0.1:41234"

    r = TargetResolver("ns", SecretCache(FaultInjectingKube(clock), clock), forward, no_close)
    spec = parse_spec({"selector": SEL, "endpoint": {"port": "pprof", "access": "PortForward"}})
    res = await r.resolve(spec, pod("p"))
    assert res.target is not None and res.target.is_loopback and res.target.read_proc_rss is False
    assert forwarded == [("ns", "p", 6060, "http")]

    direct = parse_spec({"selector": SEL, "endpoint": {"port": 6060}})
    d = await TargetResolver(
        "ns", SecretCache(FaultInjectingKube(clock), clock), refuse_forward, no_close
    ).resolve(direct, pod("p", ip="10.0.0.7"))
    assert d.target is not None and d.target.url == "http://10.0.0.7:6060" and d.target.read_proc_rss


async def test_failures_are_transient_or_not() -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)

    async def api_down(namespace: str, pod_name: str, port: int, scheme: str) -> str:
        raise ApiUnavailable("port-forward: 503", 503)

    r = TargetResolver("ns", SecretCache(kube, clock), api_down, no_close)
    pf = parse_spec({"selector": SEL, "endpoint": {"port": 6060, "access": "PortForward"}})
    res = await r.resolve(pf, pod("p"))
    assert (res.target, res.transient, res.cause) == (None, True, "ApiUnavailable")

    secret = parse_spec(
        {
            "selector": SEL,
            "endpoint": {
                "port": 6060,
                "bearerTokenSecretRef": {"name": "gone"},
                "allowInsecureBearerToken": True,
            },
        }
    )
    res = await r.resolve(secret, pod("p"))
    assert (res.target, res.transient, res.cause) == (None, False, "NotFoundError")
    assert res.problem is not None and "bearerTokenSecretRef" in res.problem

    no_port = parse_spec({"selector": SEL, "endpoint": {"port": "metrics"}})
    res = await r.resolve(no_port, pod("p"))
    assert res.cause == "NoSuchPort" and res.problem is not None and "'metrics'" in res.problem
