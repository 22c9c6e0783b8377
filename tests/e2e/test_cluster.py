"""The local control plane behaves like a cluster to the things MemoryWatch does: Deployments of Go services
become processes serving pprof on their pod IPs, scaling/deleting/restarting replaces those processes,
evictions honour PodDisruptionBudgets, ServiceAccount RBAC applies to the process, and S3 needs credentials."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import Cluster, http_get, pid_alive, running_pods, serving_info, wait_until

pytestmark = pytest.mark.e2e

VENV_PYTHON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"


def serving_pods(
    core: Any, namespace: str, app: str, count: int, timeout: float = 60
) -> dict[str, dict[str, Any]]:
    """Wait until exactly `count` running pods of `app` each have a process answering on <podIP>:6060;
    returns {pod name: /info of its process}."""

    def check() -> dict[str, dict[str, Any]] | None:
        pods = running_pods(core, namespace, f"app={app}")
        if len(pods) != count:
            return None
        out = {}
        for p in pods:
            info = serving_info(p.status.pod_ip)
            if info is None:
                return None
            out[p.metadata.name] = {**info, "ip": p.status.pod_ip}
        return out

    return wait_until(check, timeout, f"{count} pod(s) of {app} serving on their pod IPs")  # type: ignore[no-any-return]


def env_of(info: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in info["env"])


def test_deployment_runs_go_processes_serving_pprof_on_pod_ips(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path
) -> None:
    deploy("target", pprofserver, replicas=2)
    infos = serving_pods(core, namespace, "target", 2)

    ips = {i["ip"] for i in infos.values()}
    assert len(ips) == 2
    for name, info in infos.items():
        assert ipaddress.ip_address(info["ip"]) in ipaddress.ip_network("127.0.0.0/8")
        code, body = http_get(f"http://{info['ip']}:6060/debug/pprof/")
        assert code == 200 and "Types of profiles available" in body
        code, heap = http_get(f"http://{info['ip']}:6060/debug/pprof/heap?debug=1")
        assert code == 200 and "heap profile" in heap
        # $(POD_IP) in args was expanded from the downward API, as a kubelet would
        assert info["args"][1:] == [f"-listen={info['ip']}:6060"]
        env = env_of(info)
        assert env["POD_NAME"] == name and env["POD_NAMESPACE"] == namespace and env["POD_IP"] == info["ip"]
        # a process per pod, started by the pod runner, logging to the documented file
        assert pid_alive(info["pid"])
        assert cluster.runner_status(namespace, name)["containers"]["app"]["pid"] == info["pid"]  # type: ignore[index]
        assert "serving pprof on" in cluster.container_log(namespace, name, "app")


def test_scaling_adds_and_removes_processes(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:
    deploy("scaled", pprofserver, replicas=1)
    one = serving_pods(core, namespace, "scaled", 1)

    apps.patch_namespaced_deployment_scale("scaled", namespace, {"spec": {"replicas": 3}})
    three = serving_pods(core, namespace, "scaled", 3)
    assert set(one) <= set(three)
    assert len({i["pid"] for i in three.values()}) == 3

    apps.patch_namespaced_deployment_scale("scaled", namespace, {"spec": {"replicas": 1}})
    left = serving_pods(core, namespace, "scaled", 1)
    removed = [i for n, i in three.items() if n not in left]
    assert len(removed) == 2
    wait_until(lambda: not any(pid_alive(i["pid"]) for i in removed), 30, "removed pods' processes to exit")
    for i in removed:
        assert serving_info(i["ip"]) is None, f"{i['ip']}:6060 still answers after scale-down"


def test_deleted_pod_is_replaced_by_a_new_process(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path
) -> None:
    deploy("victim", pprofserver, replicas=1)
    ((old_name, old),) = serving_pods(core, namespace, "victim", 1).items()

    core.delete_namespaced_pod(old_name, namespace)
    wait_until(
        lambda: not pid_alive(old["pid"]), 30, f"process {old['pid']} of deleted pod {old_name} to exit"
    )

    def replaced() -> dict[str, Any] | None:
        pods = serving_pods(core, namespace, "victim", 1)
        return pods if old_name not in pods else None

    ((_new_name, new),) = wait_until(replaced, 60, "a replacement pod").items()
    assert new["pid"] != old["pid"] and pid_alive(new["pid"])
    assert "signal received, shutting down" in cluster.container_log(namespace, old_name, "app")


def test_rollout_restart_replaces_every_pod(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path
) -> None:
    deploy("rolled", pprofserver, replicas=2)
    before = serving_pods(core, namespace, "rolled", 2)

    cluster.kubectl("-n", namespace, "rollout", "restart", "deployment/rolled")
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/rolled", "--timeout=90s", timeout=120)

    def all_new() -> dict[str, dict[str, Any]] | None:
        pods = serving_pods(core, namespace, "rolled", 2)
        return pods if not set(pods) & set(before) else None

    after = wait_until(all_new, 90, "every pod to be replaced")
    wait_until(lambda: not any(pid_alive(i["pid"]) for i in before.values()), 30, "old processes to exit")
    assert not {i["pid"] for i in after.values()} & {i["pid"] for i in before.values()}


def test_eviction_honours_pod_disruption_budget(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path
) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    policy = client.PolicyV1Api(cluster.api_client())
    deploy("guarded", pprofserver, replicas=2)
    pods = serving_pods(core, namespace, "guarded", 2)
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "guarded"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}},
    })  # fmt: skip

    def pdb_observed(allowed: int) -> bool:
        st = policy.read_namespaced_pod_disruption_budget("guarded", namespace).status
        return bool(
            st and st.observed_generation and st.current_healthy == 2 and st.disruptions_allowed == allowed
        )

    wait_until(lambda: pdb_observed(0), 30, "the PDB to count 2 healthy pods, 0 disruptions allowed")
    name = sorted(pods)[0]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(name, namespace, eviction)
    assert refused.value.status == 429
    assert "disruption budget" in refused.value.body
    assert pid_alive(pods[name]["pid"])

    policy.patch_namespaced_pod_disruption_budget("guarded", namespace, {"spec": {"minAvailable": 1}})
    wait_until(lambda: pdb_observed(1), 30, "the PDB to allow 1 disruption")
    core.create_namespaced_pod_eviction(name, namespace, eviction)  # accepted (201)
    wait_until(lambda: not pid_alive(pods[name]["pid"]), 30, "the evicted pod's process to exit")
    after = serving_pods(core, namespace, "guarded", 2)
    assert name not in after


def test_process_has_exactly_its_service_accounts_rbac(cluster: Cluster, namespace: str, core: Any) -> None:
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "pod-reader"}})
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    })  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "pod-reader", "namespace": namespace}],
    })  # fmt: skip
    script = textwrap.dedent("""
        import json, os
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException
        config.load_kube_config()  # from $KUBECONFIG, which the pod runner sets
        api = client.ApiClient()
        ns = os.environ["POD_NAMESPACE"]
        out = {}
        review = client.AuthenticationV1Api(api).create_self_subject_review({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        out["user"] = review.status.user_info.username
        out["pods"] = [p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(ns).items]
        for what, call in [("secrets", lambda: client.CoreV1Api(api).list_namespaced_secret(ns)),
                           ("pods_other_ns", lambda: client.CoreV1Api(api).list_namespaced_pod("default")),
                           ("delete_pod", lambda: client.CoreV1Api(api).delete_namespaced_pod(os.environ["POD_NAME"], ns))]:
            try:
                call()
                out[what] = 200
            except ApiException as e:
                out[what] = e.status
        print("RESULT " + json.dumps(out), flush=True)
    """)
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "rbac-probe"},
        "spec": {
            "serviceAccountName": "pod-reader",
            "restartPolicy": "Never",
            "containers": [{
                "name": "probe", "image": "memorywatch.test/python:dev",
                "command": [str(VENV_PYTHON), "-c", script],
                "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }],
        },
    })  # fmt: skip

    def result() -> dict[str, Any] | None:
        for line in cluster.container_log(namespace, "rbac-probe", "probe").splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
        return None

    out = wait_until(result, 60, "the probe's RESULT line in its log")
    assert out["user"] == f"system:serviceaccount:{namespace}:pod-reader"
    assert out["pods"] == ["rbac-probe"]
    assert out["secrets"] == 403
    assert out["pods_other_ns"] == 403
    assert out["delete_pod"] == 403
    # restartPolicy Never: the runner reports the finished pod as Succeeded
    wait_until(lambda: core.read_namespaced_pod("rbac-probe", namespace).status.phase == "Succeeded", 30,
               "the pod to be Succeeded")  # fmt: skip


def test_container_env_and_expansion_match_a_kubelet(
    cluster: Cluster, namespace: str, core: Any, pprofserver: Path
) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}}
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"mode": "fast", "LEVEL": "debug"}})  # fmt: skip
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "envprobe", "labels": {"app": "envprobe"}},
        "spec": {
            "containers": [{
                "name": "app", "image": "memorywatch.test/gotarget:dev",
                "command": [str(pprofserver)],
                "args": ["-listen=$(POD_IP):6060", "--", "$(GREETING)", "$$(GREETING)", "$(UNDEFINED)",
                         "/data/out.txt", "-dir=/data/sub", "/database"],
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "GREETING", "value": "hello-$(POD_IP)"},
                    {"name": "LATER", "value": "$(DEFINED_AFTER)"},
                    {"name": "DEFINED_AFTER", "value": "x"},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                    {"name": "FROM_PREFIX", "value": "$(CFG_LEVEL)"},
                    {"name": "DATA_FILE", "value": "/data/file"},
                ],
                "volumeMounts": [{"name": "scratch", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    })  # fmt: skip
    info = serving_pods(core, namespace, "envprobe", 1)["envprobe"]
    env = env_of(info)
    ip = info["ip"]
    data_dir = env["MW_MOUNT_DATA"]
    assert Path(data_dir).is_dir() and data_dir.startswith(str(cluster.dir))
    assert info["args"][1:] == [f"-listen={ip}:6060", "--", f"hello-{ip}", "$(GREETING)", "$(UNDEFINED)",
                                f"{data_dir}/out.txt", f"-dir={data_dir}/sub", "/database"]  # fmt: skip
    assert env["GREETING"] == f"hello-{ip}"
    assert env["LATER"] == "$(DEFINED_AFTER)"  # only variables defined earlier expand
    assert env["MODE"] == "fast" and env["TOKEN"] == "s3cr3t" and env["CFG_mode"] == "fast"
    assert env["FROM_PREFIX"] == "debug"
    assert env["NODE"].startswith("mw-node-") and env["HOST_IP"] == "127.0.0.1" and env["SA"] == "default"
    assert env["DATA_FILE"] == f"{data_dir}/file"
    assert Path(env["KUBECONFIG"]).is_file()


def test_crashed_process_is_restarted(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path
) -> None:
    deploy("crashy", pprofserver, replicas=1)
    ((name, first),) = serving_pods(core, namespace, "crashy", 1).items()
    os.kill(first["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        info = serving_info(first["ip"])
        return info if info and info["pid"] != first["pid"] else None

    second = wait_until(restarted, 30, "the killed process to be restarted on the same pod IP")
    assert pid_alive(second["pid"])

    def reported() -> bool:
        pod = core.read_namespaced_pod(name, namespace)
        cs = pod.status.container_statuses[0]
        ready = next(c.status for c in pod.status.conditions if c.type == "Ready")
        return bool(cs.restart_count == 1 and cs.ready and cs.state.running and ready == "True"
                    and cs.last_state.terminated and cs.last_state.terminated.exit_code == 137)  # fmt: skip

    wait_until(reported, 10, "restartCount 1, lastState exit 137 and Ready again in the pod status")
    assert "exited with code 137" in cluster.container_log(namespace, name, "app")
    # kubectl logs shows the current run, --previous the killed one (kwok serves them from the runner's files)
    current = cluster.kubectl("-n", namespace, "logs", name).stdout
    previous = cluster.kubectl("-n", namespace, "logs", name, "--previous").stdout
    assert f"pid {second['pid']} serving pprof" in current and f"pid {first['pid']}" not in current
    assert f"pid {first['pid']} serving pprof" in previous


def test_crash_looping_process_shows_crash_loop_back_off(cluster: Cluster, namespace: str, core: Any) -> None:
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "looper"},
        "spec": {"containers": [{"name": "c", "image": "x", "command": ["/bin/sh", "-c", "echo boom; exit 2"]}]},
    })  # fmt: skip

    def looping() -> bool:
        pod = core.read_namespaced_pod("looper", namespace)
        cs = (pod.status.container_statuses or [None])[0]
        ready = next((c.status for c in pod.status.conditions or [] if c.type == "Ready"), None)
        return bool(cs and cs.restart_count >= 2 and cs.state.waiting
                    and cs.state.waiting.reason == "CrashLoopBackOff" and ready == "False")  # fmt: skip

    wait_until(looping, 30, "CrashLoopBackOff with restarts and Ready False")
    assert cluster.container_log(namespace, "looper", "c").count("boom") >= 2
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=looper").items
    assert any(e.reason == "BackOff" and "exited with code 2" in e.message for e in events)
    assert any(e.reason == "Started" for e in events)


def test_kubectl_port_forward_reaches_the_process(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, pprofserver: Path
) -> None:
    deploy("fwd", pprofserver, replicas=1, ports=[6060])
    ((name, info),) = serving_pods(core, namespace, "fwd", 1).items()
    pf = subprocess.Popen(
        [str(cluster.kubectl_path), f"--kubeconfig={cluster.kubeconfig}", "-n", namespace, "port-forward",
         "--address=127.0.0.1", f"pod/{name}", ":6060"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert pf.stdout is not None
        line = pf.stdout.readline()  # "Forwarding from 127.0.0.1:NNNNN -> 6060"
        m = re.search(r"127\.0\.0\.1:(\d+) -> 6060", line)
        assert m, f"unexpected port-forward output: {line!r}"
        code, body = http_get(f"http://127.0.0.1:{m.group(1)}/info")
        assert code == 200 and json.loads(body)["pid"] == info["pid"]
    finally:
        pf.terminate()
        pf.wait(10)
        for stream in (pf.stdout, pf.stderr):
            if stream:
                stream.close()


def test_s3_needs_credentials(cluster: Cluster) -> None:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    def s3(**kw: Any) -> Any:
        return boto3.client("s3", endpoint_url=cluster.s3_endpoint, region_name="us-east-1", **kw)

    good = s3(aws_access_key_id=cluster.s3_access_key, aws_secret_access_key=cluster.s3_secret_key)
    bucket = f"e2e-{int(time.time() * 1000)}"
    good.create_bucket(Bucket=bucket)
    good.put_object(Bucket=bucket, Key="profiles/heap.pb.gz", Body=b"profile-bytes")
    assert good.get_object(Bucket=bucket, Key="profiles/heap.pb.gz")["Body"].read() == b"profile-bytes"

    anonymous = s3(config=Config(signature_version=UNSIGNED))
    wrong = s3(aws_access_key_id=cluster.s3_access_key, aws_secret_access_key="not-the-secret")
    for client_ in (anonymous, wrong):
        with pytest.raises(ClientError) as e:
            client_.get_object(Bucket=bucket, Key="profiles/heap.pb.gz")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as e:
            client_.put_object(Bucket=bucket, Key="x", Body=b"y")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    for c in (good, anonymous, wrong):
        c.close()


def test_pvc_binds_to_a_host_path_the_process_writes_to(cluster: Cluster, namespace: str, core: Any) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "writer"},
            "spec": {
                "containers": [
                    {
                        "name": "w",
                        "image": "memorywatch.test/shell:dev",
                        # $(MW_MOUNT_DATA) is expanded by the runner; "$MW_MOUNT_DATA" by the shell
                        "command": [
                            "/bin/sh",
                            "-c",
                            'echo "from $(POD_NAME)" > "$MW_MOUNT_DATA/hello.txt"; sleep 600',
                        ],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                        ],
                        "volumeMounts": [{"name": "d", "mountPath": "/data"}],
                    }
                ],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        },
    )
    pvc = wait_until(
        lambda: (
            (p := core.read_namespaced_persistent_volume_claim("data", namespace)).status.phase == "Bound"
            and p
        ),
        30,
        "the claim to be Bound by the host-path provisioner",
    )
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    hello = Path(pv.spec.host_path.path) / "hello.txt"
    wait_until(
        lambda: hello.exists() and hello.read_text() == "from writer\n", 30, f"{hello} written by the pod"
    )
