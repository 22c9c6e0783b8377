"""`access: PortForward` against the real local control plane: a Go pprof server reached through the API server's
pods/portforward (kwok serving the node side), with keep-alive, concurrent connections, RBAC, a pod that goes
away, and `kubectl port-forward` itself."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_harness import Cluster, running_pods, service_account_client, serving_info, wait_until

from memorywatch.k8s import ForbiddenError, Kube, NotFoundError
from memorywatch.k8s.portforward import active_forwards, close_all, close_forward, forwarded_url

pytestmark = pytest.mark.e2e


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[Kube]:
    yield Kube(cluster.api_client())
    await close_all()


def serving_pod(core: Any, namespace: str, app: str) -> tuple[str, str, dict[str, Any]]:
    """(pod name, pod IP, /info of its process) once one pod of `app` serves on its pod IP."""

    def check() -> tuple[str, str, dict[str, Any]] | None:
        pods = running_pods(core, namespace, f"app={app}")
        if len(pods) != 1:
            return None
        info = serving_info(pods[0].status.pod_ip)
        return (pods[0].metadata.name, pods[0].status.pod_ip, info) if info else None

    return wait_until(check, 60, f"a pod of {app} serving pprof")  # type: ignore[no-any-return]


async def test_pprof_index_through_the_api_server(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path, kube: Kube
) -> None:
    deploy("target", pprofserver)
    pod, ip, info = serving_pod(core, namespace, "target")

    url = await forwarded_url(kube, namespace, pod, 6060)

    host, port = url.removeprefix("http://").split(":")
    assert host == "127.0.0.1" and host != ip, "we connect to our own listener, never to the pod IP"
    assert int(port) != 6060
    async with httpx.AsyncClient() as c:
        index = await c.get(f"{url}/debug/pprof/")
        served_by = (await c.get(f"{url}/info")).json()
    assert index.status_code == 200 and "Types of profiles available" in index.text
    assert served_by["pid"] == info["pid"], "the pod's own process answered"
    assert await forwarded_url(kube, namespace, pod, 6060) == url, "one listener per pod port, reused"
    assert active_forwards() == {f"{namespace}/{pod}:6060": f"127.0.0.1:{port}"}


async def test_keep_alive_and_concurrent_connections(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path, kube: Kube
) -> None:
    deploy("target", pprofserver)
    pod, _, _ = serving_pod(core, namespace, "target")
    url = await forwarded_url(kube, namespace, pod, 6060)

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as c:
        client_ports = set()
        for _ in range(5):
            r = await c.get(f"{url}/debug/pprof/heap?debug=1")
            assert r.status_code == 200 and "# runtime.MemStats" in r.text
            client_ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
        big = await c.get(f"{url}/debug/pprof/goroutine?debug=2")
        assert big.status_code == 200 and "goroutine " in big.text
        client_ports.add(big.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(client_ports) == 1, "every request went over one kept-alive connection"

    # Two connections at once, each waiting 3 s in the pod (a delta heap profile): both finish in about 3 s, so
    # neither waited for the other (one after the other takes at least 6 s; the rest is stream set-up).
    async def slow(c: httpx.AsyncClient) -> tuple[int, int]:
        r = await c.get(f"{url}/debug/pprof/heap?seconds=3", timeout=30)
        return r.status_code, r.extensions["network_stream"].get_extra_info("client_addr")[1]

    async with httpx.AsyncClient() as a, httpx.AsyncClient() as b:
        t0 = time.monotonic()
        (code_a, port_a), (code_b, port_b) = await asyncio.gather(slow(a), slow(b))
        elapsed = time.monotonic() - t0
    assert code_a == code_b == 200
    assert port_a != port_b, "two local connections"
    assert elapsed < 5.0, f"the two requests ran one after the other ({elapsed:.2f}s)"


def sa_kube(cluster: Cluster, namespace: str, name: str, rules: list[dict[str, Any]]) -> Kube:
    return Kube(service_account_client(cluster, namespace, name, rules))


async def test_rbac_decides_who_may_forward(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path, kube: Kube
) -> None:
    deploy("target", pprofserver)
    pod, _, _ = serving_pod(core, namespace, "target")
    reader = sa_kube(cluster, namespace, "reader", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    ])  # fmt: skip
    # A WebSocket port-forward is a GET upgraded to a stream: the API server wants both get and create.
    create_only = sa_kube(cluster, namespace, "create-only", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create"]},
    ])  # fmt: skip
    forwarder = sa_kube(cluster, namespace, "forwarder", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    ])  # fmt: skip

    with pytest.raises(ForbiddenError) as refused:
        await forwarded_url(reader, namespace, pod, 6060)
    assert refused.value.status == 403 and "pods/portforward" in str(refused.value)
    assert "needs get and create on pods/portforward" in str(refused.value)
    with pytest.raises(ForbiddenError, match='cannot get resource "pods/portforward"'):
        await forwarded_url(create_only, namespace, pod, 6060)
    assert active_forwards() == {}, "no listener is left behind for a refused forward"

    url = await forwarded_url(forwarder, namespace, pod, 6060)
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"{url}/debug/pprof/")).status_code == 200


async def test_missing_and_vanished_pods(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path, kube: Kube
) -> None:
    with pytest.raises(NotFoundError):
        await forwarded_url(kube, namespace, "no-such-pod", 6060)

    deploy("target", pprofserver)
    pod, _, _ = serving_pod(core, namespace, "target")
    url = await forwarded_url(kube, namespace, pod, 6060)
    core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
    wait_until(lambda: pod not in {p.metadata.name for p in core.list_namespaced_pod(namespace).items}, 30,
               "the pod to be gone")  # fmt: skip

    async with httpx.AsyncClient() as c:
        with pytest.raises(httpx.TransportError):
            await c.get(f"{url}/debug/pprof/", timeout=10)
    # The listener of a vanished pod retires itself; asking again says why.
    assert f"{namespace}/{pod}:6060" not in active_forwards()
    with pytest.raises(NotFoundError):
        await forwarded_url(kube, namespace, pod, 6060)


async def test_close_forward_stops_the_listener(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path, kube: Kube
) -> None:
    deploy("target", pprofserver)
    pod, _, _ = serving_pod(core, namespace, "target")
    url = await forwarded_url(kube, namespace, pod, 6060)

    await close_forward(namespace, pod, 6060)

    async with httpx.AsyncClient() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"{url}/debug/pprof/")
    again = await forwarded_url(kube, namespace, pod, 6060)
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"{again}/debug/pprof/")).status_code == 200


def test_kubectl_port_forward(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path
) -> None:
    deploy("target", pprofserver)
    pod, _, info = serving_pod(core, namespace, "target")
    proc = subprocess.Popen(
        [str(cluster.kubectl_path), f"--kubeconfig={cluster.kubeconfig}", "-n", namespace,
         "port-forward", f"pod/{pod}", ":6060", "--address=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 6060", line)
        assert m, f"kubectl port-forward said: {line!r}"
        r = httpx.get(f"http://127.0.0.1:{m.group(1)}/info", timeout=10)
        assert r.status_code == 200 and r.json()["pid"] == info["pid"]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_idle_listener_retires_and_is_recreated_on_demand(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path, kube: Kube,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from memorywatch.k8s import portforward

    monkeypatch.setattr(portforward, "IDLE_SECONDS", 0.4)
    deploy("target", pprofserver)
    pod, _, _ = serving_pod(core, namespace, "target")
    await forwarded_url(kube, namespace, pod, 6060)

    await asyncio.sleep(1.2)

    assert active_forwards() == {}, "nobody asked for it or connected: the listener retired"
    again = await forwarded_url(kube, namespace, pod, 6060)
    assert f"{namespace}/{pod}:6060" in active_forwards()
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"{again}/debug/pprof/")).status_code == 200
