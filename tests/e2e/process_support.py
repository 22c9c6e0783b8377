"""Real `memorywatch run` processes for the end-to-end tests (tests/e2e/test_sharding.py, test_two_operators.py):
each in a process of its own, against the local control plane, with its metrics read over HTTP; and a kubeconfig
for the chart's own ServiceAccount (its rendered RBAC applied), so a process holds exactly what an install grants."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from e2e_harness import Cluster
from operator_support import REPO, helm, token_kubeconfig
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`memorywatch run --namespace NS` in a process of its own, as the chart starts it; `extra` are further
    arguments (sharding, action limits), `kubeconfig` the identity it runs as (the admin's by default), and
    `pod_namespace` the namespace the chart would run it in (its Leases live there)."""

    def __init__(self, cluster: Cluster, namespace: str, identity: str, log_dir: pathlib.Path, *,
                 extra: Sequence[str] = (), kubeconfig: pathlib.Path | None = None,
                 pod_namespace: str | None = None) -> None:  # fmt: skip
        self.identity = identity
        self.metrics_port = free_port()
        env = dict(os.environ, KUBECONFIG=str(kubeconfig or cluster.kubeconfig), MEMORYWATCH_POD_NAME=identity,
                   MEMORYWATCH_POD_NAMESPACE=pod_namespace or namespace,
                   MEMORYWATCH_BIND_ADDRESS="127.0.0.1")  # fmt: skip
        self.log = log_dir / f"{identity}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memorywatch", "run", "--namespace", namespace,
                 "--store", str(log_dir / identity), "--health-port", "0",
                 "--metrics-port", str(self.metrics_port), "--log-level", "info", *extra],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.identity} exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
            )

    def metric(self, name: str, **labels: str) -> float | None:
        self.alive()
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None  # not listening yet
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def until_true(check: Callable[[], bool], within: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if check():
            return time.monotonic() - t0
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")


def chart_identity(
    cluster: Cluster, release: str, namespace: str, out: pathlib.Path, *values: str
) -> tuple[pathlib.Path, str]:
    """Apply the chart's ServiceAccount and RBAC (rendered by helm with `values`, `--set` style) for `release` in
    `namespace`, and write a kubeconfig for that ServiceAccount to `out`. Answers (kubeconfig, the rendered
    manifests) — delete the latter with kubectl afterwards (its ClusterRoles are cluster-scoped)."""
    from kubernetes import client

    sets = [arg for v in values for arg in ("--set", v)]
    rendered = helm(cluster, "template", release, str(REPO / "charts" / "memorywatch"), "-n", namespace,
                    "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml",
                    *sets)  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=rendered)
    sa = f"{release}-memorywatch"
    core = client.CoreV1Api(cluster.api_client())
    token: Any = core.create_namespaced_service_account_token(
        sa, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    return token_kubeconfig(cluster, out, sa, namespace, token), rendered
