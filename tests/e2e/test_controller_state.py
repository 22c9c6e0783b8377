"""The controller against the real API server (controller level: WatchController in this process, real Kube
client, real port-forwards through the API server, real Go targets): a PortForward target is never judged by
the operator's own memory, and editing dryRun or another rule keeps a rule's series."""

from __future__ import annotations

import asyncio
import os
import pathlib
from typing import Any

import pytest
from controller_support import GROUP, PLURAL, VERSION, condition, running_controller, until
from e2e_harness import Cluster, running_pods, wait_until

from memorywatch.control.watch import WatchController
from memorywatch.scrape import procrss
from support.gotargets import build_gotarget

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MIB = 2**20


@pytest.fixture(scope="module", autouse=True)
def crd_installed(cluster: Cluster) -> None:
    """The CRD applied server-side and established (left installed: other suites share the cluster)."""
    crd = pathlib.Path(__file__).resolve().parents[2] / "crds" / "memorywatch.io_memorywatches.yaml"
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=memorywatch-tests", "-f", str(crd)
    )
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/memorywatches.memorywatch.io", "--timeout=60s"
    )


def create_mw(api: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    from kubernetes import client

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MemoryWatch",
        "metadata": {"name": name},
        "spec": spec,
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def secret_reads() -> float:
    from prometheus_client import REGISTRY

    return sum(
        REGISTRY.get_sample_value("memorywatch_secret_reads_total", {"result": r}) or 0.0
        for r in ("ok", "error")
    )


def growth(c: WatchController, rule: str, pod: str) -> float | None:
    states = c.watcher.rule_states(pod) if c.watcher is not None else {}
    return states[rule].growth if rule in states else None


async def test_a_port_forward_target_is_not_judged_by_the_operators_memory(
    cluster: Cluster,
    namespace: str,
    deploy: Any,
    core: Any,
    pprofserver: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    """pprofserver's memory is flat and it serves no /metrics. Through a port-forward its address is this
    process's own listener, so /proc would report *our* RSS, which grows by 256 MiB here while the watch runs."""
    api = cluster.api_client()
    deploy("flat", pprofserver)
    pod = wait_until(lambda: (p := running_pods(core, namespace, "app=flat")) and p[0], 60, "the flat pod")
    pod_name = pod.metadata.name
    rules = [{"name": "non-heap", "kind": "NonHeapGrowth", "window": "20s", "minGrowth": "16Mi"}]
    spec = {"selector": {"matchLabels": {"app": "flat"}}, "endpoint": {"port": 6060, "access": "PortForward"},
            "interval": "1s", "rules": rules}  # fmt: skip
    create_mw(api, namespace, "flat", spec)

    hoard: list[bytearray] = []
    async with running_controller(api, namespace, "flat", tmp_path) as (c, scraper, cached):
        await until(lambda: scraper.samples, "the first sample through the port-forward", 60)
        target = scraper.samples[0][0]
        assert target.is_loopback and target.read_proc_rss is False
        # The hazard is real: whoever listens on the forwarded address is this very process.
        _, owner = procrss.read_rss(target.host, target.port, None)
        assert owner is not None and owner.pid == os.getpid()

        for _ in range(32):  # 256 MiB over ~24 s, touched so it is resident
            chunk = bytearray(8 * MIB)
            chunk[::4096] = b"x" * len(chunk[::4096])
            hoard.append(chunk)
            await asyncio.sleep(0.75)
        await asyncio.sleep(5)

        sources = {s.rss_source for _, s in scraper.samples}
        assert "proc" not in sources, sources
        assert len(scraper.samples) >= 20
        await asyncio.to_thread(cached.refresh)
        leak = condition(cached.body, "LeakDetected")
        assert leak.get("status") == "False", leak
        assert not [e for e in core.list_namespaced_event(namespace).items if e.reason == "LeakDetected"]
        assert c.pods.names() == [pod_name]
    del hoard


async def test_editing_dry_run_or_another_rule_keeps_the_series(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, tmp_path: pathlib.Path
) -> None:
    from kubernetes import client

    api = cluster.api_client()
    binary = build_gotarget()
    deploy("leaky", [str(binary)], args=["-listen=$(POD_IP):6060", "-mode=goroutine-leak", "-rate=20"])
    pod = wait_until(lambda: (p := running_pods(core, namespace, "app=leaky")) and p[0], 60, "the leaky pod")
    pod_name = pod.metadata.name
    rules = [
        {"name": "kept", "kind": "GoroutineGrowth", "window": "10m", "minGrowth": "1000000"},
        {"name": "edited", "kind": "GoroutineGrowth", "window": "10m", "minGrowth": "1000000"},
    ]
    spec = {"selector": {"matchLabels": {"app": "leaky"}}, "endpoint": {"port": 6060}, "interval": "2s",
            "rules": rules, "action": {"type": "EvictPod", "dryRun": True}}  # fmt: skip
    create_mw(api, namespace, "leaky", spec)
    custom = client.CustomObjectsApi(api)

    async with running_controller(api, namespace, "leaky", tmp_path) as (c, scraper, _):
        await until(lambda: growth(c, "kept", pod_name) and growth(c, "edited", pod_name), "both trends", 90)
        watcher = c.watcher
        samples_before = len(scraper.samples)

        patch = {"spec": {"action": {"type": "EvictPod", "dryRun": False},
                          "rules": [rules[0], {**rules[1], "minGrowth": "2000000"}]}}  # fmt: skip
        await asyncio.to_thread(
            custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, "leaky", patch
        )
        await until(lambda: c.generation == 2, "the controller to take generation 2", 30)

        assert c.watcher is watcher, "the engine kept running"
        assert c.spec is not None and c.spec.action.dry_run is False
        assert growth(c, "edited", pod_name) is None, "the edited rule starts a new series"
        kept = growth(c, "kept", pod_name)
        assert kept is not None and kept > 0, "the other rule kept its series"
        await until(lambda: len(scraper.samples) >= samples_before + 3, "more samples", 30)
        assert growth(c, "kept", pod_name) is not None
        assert growth(c, "edited", pod_name) is not None, "the edited rule builds its own series again"


async def test_secret_reads_failing_for_a_minute_through_a_real_proxy(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, tmp_path: pathlib.Path
) -> None:
    """The API server answers the operator's Secret reads with 500 for 30 s, then 429 for 30 s (a proxy in
    front of it injects them; everything else passes through). The watch reports Degraded with the cause,
    keeps its target, series and cooldown, and recovers by itself."""
    import time

    from apiserver_proxy import FaultInjectingApiProxy, proxied_api_client

    from memorywatch.k8s import Kube

    api = cluster.api_client()
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "tok"}, "stringData": {"token": "s3cret-tok"}}
    )
    binary = build_gotarget()
    deploy("leaky", [str(binary)], args=["-listen=$(POD_IP):6060", "-mode=goroutine-leak", "-rate=20"])
    pod = wait_until(lambda: (p := running_pods(core, namespace, "app=leaky")) and p[0], 60, "the leaky pod")
    pod_name = pod.metadata.name
    rules = [{"name": "kept", "kind": "GoroutineGrowth", "window": "10m", "minGrowth": "1000000"}]
    spec = {"selector": {"matchLabels": {"app": "leaky"}}, "interval": "2s", "rules": rules,
            "endpoint": {"port": 6060, "bearerTokenSecretRef": {"name": "tok", "key": "token"},
                         "allowInsecureBearerToken": True}}  # fmt: skip
    create_mw(api, namespace, "leaky", spec)

    upstream = api.configuration.host
    proxy = FaultInjectingApiProxy(upstream, pathlib.Path(api.configuration.ssl_ca_cert))
    await proxy.start()
    kube = Kube(proxied_api_client(cluster.kubeconfig, proxy.url))
    try:
        async with running_controller(api, namespace, "leaky", tmp_path / "store", kube=kube) as (
            c,
            scraper,
            cached,
        ):
            c.secrets.ttl_seconds = c.secrets.retry_seconds = 5.0  # so the minute sees a dozen refreshes
            await until(lambda: growth(c, "kept", pod_name), "a trend", 90)
            c.cooldowns[(pod_name, "kept", "Capture")] = time.time() + 3600
            watcher = c.watcher
            seen_degraded: set[str] = set()
            reads_before, reads_since = secret_reads(), time.monotonic()

            for status, cause in ((500, "ApiUnavailable"), (429, "TooManyRequests")):
                proxy.fail_secrets(status, 30)
                # Polled through the fault and, until the condition is seen, a while after it: a status
                # write taken during the fault may land late on a loaded machine.
                fault_ends = time.monotonic() + 30
                while time.monotonic() < fault_ends or (
                    cause not in seen_degraded and time.monotonic() < fault_ends + 20
                ):
                    await asyncio.sleep(1)
                    assert c.watcher is watcher and c.pods.names() == [pod_name], "the target is kept"
                    assert growth(c, "kept", pod_name), "its series too"
                    await asyncio.to_thread(cached.refresh)
                    d = condition(cached.body, "Degraded")
                    if d.get("status") == "True" and cause in d.get("message", ""):
                        seen_degraded.add(cause)
                        assert pod_name in d["message"] and "s3cret" not in d["message"]
            assert seen_degraded == {"ApiUnavailable", "TooManyRequests"}, seen_degraded
            assert proxy.injected[500] >= 3 and proxy.injected[429] >= 3, proxy.injected
            # Reads the controller made (the kubernetes client itself repeats a 429 with Retry-After up to 3
            # times, so the proxy sees more requests than that).
            assert secret_reads() - reads_before <= (time.monotonic() - reads_since) / 5 + 3, (
                "Secret reads are spaced out, not one per tick"
            )
            warnings = [e for e in core.list_namespaced_event(namespace).items
                        if e.reason == "Degraded" and e.type == "Warning"]  # fmt: skip
            assert warnings and any("ApiUnavailable" in e.message for e in warnings)

            async def recovered() -> bool:
                await asyncio.to_thread(cached.refresh)
                return condition(cached.body, "Degraded").get("status") == "False"

            deadline = time.monotonic() + 60
            while not await recovered():
                assert time.monotonic() < deadline, condition(cached.body, "Degraded")
                await asyncio.sleep(1)
            assert c.watcher is watcher and growth(c, "kept", pod_name)
            cooldowns = {(x["pod"], x["rule"]) for x in cached.body["status"].get("cooldowns", [])}
            assert (pod_name, "kept") in cooldowns, "the cooldown survived"
            assert scraper.samples[-1][0].bearer_token == "s3cret-tok"
    finally:
        await asyncio.to_thread(kube.api.close)  # its kept-alive connections to the proxy first
        await proxy.close()
