"""hack/local-cluster's own contract, on a second cluster (own directory, own ports) so the session cluster
is left alone: `up` is idempotent and prints the kubeconfig last, `status` reports every component, and
`down` leaves no process behind, pod processes included."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import HACK, exists, pid_alive, wait_until

pytestmark = pytest.mark.e2e

PORT_OFFSET = 1000  # the defaults are 26xxx; this cluster uses 27xxx
PORTS = {"ETCD": 26379, "ETCD_PEER": 26380, "APISERVER": 26443, "CONTROLLER_MANAGER": 26257,
         "SCHEDULER": 26259, "KWOK": 26250, "S3": 26900}  # fmt: skip


def marked_pids(cluster_dir: Path) -> list[int]:
    """Live processes started for this cluster (they all carry MW_CLUSTER_DIR=<dir> in their environment)."""
    marker = f"MW_CLUSTER_DIR={cluster_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in env and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def test_up_status_down_on_a_second_cluster(tmp_path: Path, cluster: Any) -> None:
    # `cluster` first: the session cluster's `up` has built the tools, so this one only starts processes.
    cdir = tmp_path / "second-cluster"
    env = {**os.environ, "MEMORYWATCH_CLUSTER_DIR": str(cdir), "MW_NODES": "1"}
    env.update({f"MW_{k}_PORT": str(v + PORT_OFFSET) for k, v in PORTS.items()})
    # a pod network of its own, whatever network the session cluster was given (MW_POD_NETWORK may be set)
    session_net = cluster.info["pod_network"].split(".0.0/")[0]
    env["MW_POD_NETWORK"] = "127.254" if session_net != "127.254" else "127.253"

    def hack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HACK / "local-cluster"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    try:
        up = hack("up")
        assert up.returncode == 0, up.stderr
        kubeconfig = Path(up.stdout.strip().splitlines()[-1])
        assert kubeconfig == cdir / "kubeconfig" and kubeconfig.is_file()

        t0 = time.monotonic()
        again = hack("up")
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == str(kubeconfig)
        assert "already running" in again.stderr
        assert time.monotonic() - t0 < 15

        st = hack("status", "--json")
        assert st.returncode == 0, st.stdout + st.stderr
        info = json.loads(st.stdout)
        assert info["api_server"] == f"https://127.0.0.1:{26443 + PORT_OFFSET}"
        assert info["s3_endpoint"] == f"http://127.0.0.1:{26900 + PORT_OFFSET}"
        names = [c["component"] for c in info["components"]]
        assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "s3",
                         "pod-runner"]  # fmt: skip
        for c in info["components"]:
            assert c["alive"] and pid_alive(c["pid"]) and Path(c["log"]).is_file(), c
        human = hack("status")
        assert all(n in human.stdout for n in names)

        # a pod whose process is a shell that starts a child of its own: down must stop both
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)
        wait_until(
            lambda: exists(lambda: core.read_namespaced_service_account("default", "default")), 30, "SA"
        )
        core.create_namespaced_pod("default", {
            "metadata": {"name": "sleeper"},
            "spec": {"containers": [{"name": "s", "image": "x",
                                     "command": ["/bin/sh", "-c", "sleep 3000 & sleep 3000; wait"]}]},
        })  # fmt: skip
        status_file = cdir / "pods" / "default" / "sleeper" / "status.json"
        wait_until(lambda: status_file.exists() and json.loads(status_file.read_text())["containers"]["s"]["pid"],
                   60, "the sleeper pod's process")  # fmt: skip
        # kwok restarted (as `down`+`up` or a crash+`up` do) must not hand the running pod's IP to a new pod
        sleeper_ip = core.read_namespaced_pod("sleeper", "default").status.pod_ip
        # its own 127.x network, so its pods never take an address of the session cluster's pods
        assert info["pod_network"] != cluster.info["pod_network"]
        assert ipaddress.ip_address(sleeper_ip) in ipaddress.ip_network(info["pod_network"])
        kwok_pid = next(c["pid"] for c in info["components"] if c["component"] == "kwok")
        os.kill(kwok_pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(kwok_pid), 10, "kwok to die")
        healed = hack("up")
        assert healed.returncode == 0, healed.stderr
        assert "starting kwok" in healed.stderr
        core.create_namespaced_pod("default", {
            "metadata": {"name": "newcomer"},
            "spec": {"containers": [{"name": "s", "image": "x", "command": ["/bin/sleep", "3000"]}]},
        })  # fmt: skip
        newcomer_ip = wait_until(lambda: core.read_namespaced_pod("newcomer", "default").status.pod_ip, 30,
                                 "an IP for the new pod")  # fmt: skip
        assert newcomer_ip != sleeper_ip
        api.close()
        info = json.loads(hack("status", "--json").stdout)
        component_pids = {c["pid"] for c in info["components"]}
        assert len(set(marked_pids(cdir)) - component_pids) >= 4  # sh + two sleeps, newcomer's sleep

        down = hack("down")
        assert down.returncode == 0, down.stderr
        assert marked_pids(cdir) == []
        assert not any(pid_alive(p) for p in component_pids)
        st = hack("status", "--json")
        assert st.returncode != 0
        assert not any(c["alive"] for c in json.loads(st.stdout)["components"])
    finally:
        hack("down")
