"""The operator end to end: the chart installed with helm, the operator running as the chart's
ServiceAccount through the pod runner (not as admin), real Go services leaking behind a real API server.

We test these aspects, all scenarios running at once against one operator to keep the suite short:
each leak gives a LeakDetected event and a capture (PVC and S3) whose profiles open in go tool pprof;
EvictPod replaces the pod; Scale grows replicas by the step and stops at maxReplicas; dryRun changes
nothing and says what it would have done; HTTPS with a bearer token from a Secret; PortForward access through
the API server; a healthy service gets no breach and no action; a watch selecting nothing says so;
a MemoryWatch cannot reach pods or Secrets of another namespace; killing the operator mid-watch leaves no
duplicate capture or action and no partial capture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_harness import Cluster, deployment_manifest, http_get, runner_log, running_pods, wait_until
from operator_support import (
    GROUP,
    PLURAL,
    RELEASE,
    REPO,
    VERSION,
    adopt_crds,
    condition,
    dump,
    events,
    get_mw,
    go_tool_pprof_top,
    helm,
    memorywatch,
    new_namespace,
    pvc_dir,
    tool,
    wait_for,
)

from support.gotargets import build_gotarget

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]  # the first test also pays for the shared setup
BATCH_SECONDS = 240


def _ready(ip: str) -> bool:
    try:
        return http_get(f"http://{ip}:8080/readyz")[0] == 200
    except OSError:  # not listening yet
        return False


@dataclasses.dataclass
class Operator:
    namespace: str
    store: pathlib.Path
    core: Any
    apps: Any
    custom: Any
    cluster: Cluster

    def pod(self) -> Any:
        pods = running_pods(self.core, self.namespace, "app.kubernetes.io/name=memorywatch")
        return pods[0] if pods else None


@pytest.fixture(scope="module")
def mw_operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    from kubernetes import client

    api = cluster.api_client()
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    # A run that died before its teardown leaves its release behind, with cluster-wide roles in the way.
    for release in json.loads(helm(cluster, "list", "-A", "-o", "json")):
        if release["name"] == RELEASE:
            helm(cluster, "uninstall", RELEASE, "-n", release["namespace"], "--wait", "--timeout", "2m")
    ns = new_namespace(core, "mw-system")
    adopt_crds(cluster, RELEASE, ns)
    values = tmp_path_factory.mktemp("helm") / "values.yaml"
    values.write_text(
        """
rbac: {scope: cluster}
store: {s3Policy: {allowedEndpoints: ["127.0.0.1:*"], allowedCIDRs: ["127.0.0.0/8"]}}
actions: {evict: {enabled: true}, restart: {enabled: true}, scale: {enabled: true}, minReplicas: 1}
logging: {format: text, level: info}
# The capture-files APIService: the local control plane cannot reach a Service (docs/local-cluster.md, "The
# aggregation layer"), and an APIService that stays unavailable holds up namespace deletion (discovery fails);
# test_capture_files.py turns it on and points it at the pod.
fileServer: {enabled: false}
extraEnv:
  - name: POD_IP
    valueFrom: {fieldRef: {fieldPath: status.podIP}}
extraArgs: ["--bind-address=$(POD_IP)"]
"""
    )
    helm(
        cluster,
        "install",
        RELEASE,
        str(REPO / "charts" / "memorywatch"),
        "-n",
        ns,
        "-f",
        str(values),
        "--wait",
        "--timeout",
        "3m",
    )
    op = Operator(ns, pathlib.Path("/nonexistent"), core, apps, custom, cluster)
    pod = wait_for(op.pod, 120, "the operator pod to run")
    assert pod.spec.service_account_name.startswith(RELEASE), (
        "the operator runs as the chart's ServiceAccount"
    )
    wait_for(lambda: _ready(op.pod().status.pod_ip), 120, "the operator to be ready",
             lambda: cluster.container_log(ns, op.pod().metadata.name, "memorywatch")[-4000:])  # fmt: skip
    op.store = pvc_dir(core, ns)
    # The chart's default image and command: the pod runner ran the image's entrypoint chrooted, as 65532.
    chroot = [
        line for line in runner_log(cluster).splitlines() if f"pod {ns}/" in line and " chroot " in line
    ]
    assert chroot and " as uid 65532 gid 65532, read-only root" in chroot[-1], runner_log(cluster)[-3000:]
    try:
        yield op
    finally:
        log = cluster.container_log(ns, op.pod().metadata.name, "memorywatch") if op.pod() else ""
        print(f"--- operator log (tail) ---\n{log[-8000:]}")
        # MemoryWatches carry the operator's finalizer: delete them while the operator still runs, or their
        # namespaces would hang in Terminating (docs/operator.md, "Uninstalling").
        _delete_memorywatches(op)
        env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
        subprocess.run(
            [tool("helm"), "uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "2m"],
            env=env,
            check=False,
            timeout=180,
        )
        core.delete_namespace(ns)


def _delete_memorywatches(op: Operator) -> None:
    """Delete every MemoryWatch and wait until the operator has released them (bounded)."""
    from kubernetes.client.rest import ApiException

    for mw in op.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]:
        with contextlib.suppress(ApiException):
            op.custom.delete_namespaced_custom_object(
                GROUP, VERSION, mw["metadata"]["namespace"], PLURAL, mw["metadata"]["name"]
            )
    deadline = time.monotonic() + 90
    while (
        op.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"] and time.monotonic() < deadline
    ):
        time.sleep(1)


@dataclasses.dataclass
class Scenario:
    namespace: str
    app: str
    mw: str
    first_pods: list[str]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _deploy(
    op: Operator,
    namespace: str,
    name: str,
    mode: str,
    *,
    rate: int | None = None,
    replicas: int = 1,
    extra_args: list[str] | None = None,
    memory_limit: str | None = None,
    sidecar_memory_limit: str | None = None,
) -> list[str]:
    binary = build_gotarget()
    args = [
        "-listen=$(POD_IP):6060",
        f"-mode={mode}",
        *([f"-rate={rate}"] if rate else []),
        *(extra_args or []),
    ]
    manifest = deployment_manifest(name, [str(binary)], args=args, replicas=replicas)
    if memory_limit:
        manifest["spec"]["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"memory": memory_limit}
        }
    if sidecar_memory_limit:
        # A sidecar with a bigger limit, listed first: the kernel kills each container at its own limit, so
        # the forecast must use the limit of the container serving pprof, not the pod's sum or the first one.
        sidecar = deployment_manifest(
            "sidecar", [str(binary)], args=["-listen=$(POD_IP):6061", "-mode=healthy"], ports=[6061]
        )["spec"]["template"]["spec"]["containers"][0]
        sidecar["name"] = "sidecar"
        sidecar["resources"] = {"limits": {"memory": sidecar_memory_limit}}
        manifest["spec"]["template"]["spec"]["containers"].insert(0, sidecar)
    op.apps.create_namespaced_deployment(namespace, manifest)
    pods = wait_until(
        lambda: (p := running_pods(op.core, namespace, f"app={name}")) and len(p) >= replicas and p,
        90,
        f"{name} pods running",
    )
    return [p.metadata.name for p in pods]


def _apply(op: Operator, namespace: str, body: dict[str, Any]) -> None:
    op.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def _secret(op: Operator, namespace: str, name: str, data: dict[str, str]) -> None:
    op.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})
    # Secrets by consent: the namespace lets the operator read its Secrets (the chart grants none by default).
    op.cluster.kubectl("-n", namespace, "create", "rolebinding", f"memorywatch-secret-reader-{name}",
                       f"--clusterrole={RELEASE}-memorywatch-secret-reader",
                       f"--serviceaccount={op.namespace}:{RELEASE}-memorywatch")  # fmt: skip


@pytest.fixture(scope="module")
def scenarios(
    mw_operator: Operator, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Scenario]]:
    import boto3
    import trustme

    op = mw_operator
    s: dict[str, Scenario] = {}
    made: list[str] = []

    def ns(prefix: str) -> str:
        name = new_namespace(op.core, prefix)
        made.append(name)
        return name

    # heap leak, default store (the operator's PVC)
    n = ns("e2e-heap")
    s["heap"] = Scenario(n, "leaky", "leaky", _deploy(op, n, "leaky", "heap-leak", rate=1 << 20))
    _apply(op, n, memorywatch("leaky", "leaky"))

    # goroutine leak, captured into S3 (credentials from a Secret in the watch's namespace)
    n = ns("e2e-s3")
    bucket = f"mw-e2e-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint, aws_access_key_id=cluster.s3_access_key,
                      aws_secret_access_key=cluster.s3_secret_key, region_name="us-east-1")  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    _secret(
        op,
        n,
        "s3-creds",
        {"AWS_ACCESS_KEY_ID": cluster.s3_access_key, "AWS_SECRET_ACCESS_KEY": cluster.s3_secret_key},
    )
    s["s3"] = Scenario(
        n,
        "spinner",
        "spinner",
        _deploy(op, n, "spinner", "goroutine-leak", rate=20),
        {"bucket": bucket, "s3": s3},
    )
    storage = {
        "s3": {
            "bucket": bucket,
            "prefix": "captures",
            "endpoint": cluster.s3_endpoint,
            "region": "us-east-1",
            "credentialsSecretRef": {"name": "s3-creds"},
        }
    }
    _apply(op, n, memorywatch("spinner", "spinner", capture={"storage": storage}))

    # blocked finalizer, EvictPod
    n = ns("e2e-evict")
    s["evict"] = Scenario(n, "finq", "finq", _deploy(op, n, "finq", "finalizer-leak", rate=500))
    _apply(op, n, memorywatch("finq", "finq", action={"type": "EvictPod"}))

    # cgo leak, Scale by 1 up to 2
    n = ns("e2e-scale")
    s["scale"] = Scenario(
        n, "native", "native", _deploy(op, n, "native", "cgo-leak", rate=1 << 20, extra_args=["-metrics"])
    )
    _apply(
        op,
        n,
        memorywatch(
            "native",
            "native",
            capture={"cooldown": "15s"},
            action={"type": "Scale", "scale": {"step": 1, "maxReplicas": 2}, "cooldown": "1m"},
        ),
    )

    # dry run: says what it would do, changes nothing
    n = ns("e2e-dry")
    s["dry"] = Scenario(n, "leaky", "leaky", _deploy(op, n, "leaky", "heap-leak", rate=1 << 20))
    _apply(op, n, memorywatch("leaky", "leaky", action={"type": "EvictPod", "dryRun": True}))

    # HTTPS with a CA and a bearer token, both from Secrets
    n = ns("e2e-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("leaky.e2e.test")
    certs = tmp_path_factory.mktemp("tls")
    cert.private_key_and_cert_chain_pem.write_to_path(str(certs / "server.pem"))
    token = uuid.uuid4().hex
    _secret(op, n, "pprof-token", {"token": token + "\n"})
    _secret(op, n, "pprof-ca", {"ca.crt": ca.cert_pem.bytes().decode()})
    s["tls"] = Scenario(n, "secure", "secure", _deploy(op, n, "secure", "heap-leak", rate=1 << 20,
        extra_args=[f"-tls-cert={certs / 'server.pem'}", f"-tls-key={certs / 'server.pem'}", f"-token={token}"]), {"token": token})  # fmt: skip
    _apply(
        op,
        n,
        memorywatch(
            "secure",
            "secure",
            endpoint={
                "scheme": "https",
                "tls": {"caSecretRef": {"name": "pprof-ca"}, "serverName": "leaky.e2e.test"},
                "bearerTokenSecretRef": {"name": "pprof-token"},
            },
        ),
    )

    # through the API server's port-forward
    n = ns("e2e-pf")
    s["pf"] = Scenario(n, "tunnel", "tunnel", _deploy(op, n, "tunnel", "goroutine-leak", rate=20))
    _apply(op, n, memorywatch("tunnel", "tunnel", endpoint={"access": "PortForward"}))

    # the container's memory limit comes close: the forecast fires before the limit is reached; a 600Mi app
    # next to a 2Gi sidecar is forecast against 600Mi
    n = ns("e2e-limit")
    s["limit"] = Scenario(
        n,
        "filler",
        "filler",
        _deploy(op, n, "filler", "heap-leak", rate=2 << 20, memory_limit="600Mi", sidecar_memory_limit="2Gi"),
    )
    near = [{"name": "near-limit", "kind": "MemoryLimit", "window": "30s", "horizon": "5m"}]
    _apply(op, n, memorywatch("filler", "filler", rules=near))

    # healthy, with an action armed: nothing may happen
    n = ns("e2e-healthy")
    s["healthy"] = Scenario(n, "calm", "calm", _deploy(op, n, "calm", "healthy"))
    _apply(op, n, memorywatch("calm", "calm", action={"type": "EvictPod"}))

    # selects nothing; isolation: pods and Secrets of another namespace are out of reach
    other = ns("e2e-iso-b")
    _deploy(op, other, "elsewhere", "heap-leak", rate=1 << 20)
    _secret(op, other, "only-in-b", {"token": "x"})
    n = ns("e2e-iso-a")
    own = _deploy(op, n, "mine", "healthy")
    _apply(op, n, memorywatch("nothing", "no-such-app"))
    _apply(op, n, memorywatch("steal-pods", "elsewhere"))
    _apply(
        op,
        n,
        memorywatch(
            "steal-secret",
            "mine",
            endpoint={"bearerTokenSecretRef": {"name": "only-in-b"}, "allowInsecureBearerToken": True},
        ),
    )
    s["iso"] = Scenario(n, "mine", "steal-pods", own, {"other": other})

    yield s
    _delete_memorywatches(op)
    for name in made:
        op.core.delete_namespace(name)
    for key in s["s3"].extra["s3"].list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=key["Key"])


@pytest.fixture(scope="module")
def settled(mw_operator: Operator, scenarios: dict[str, Scenario]) -> dict[str, Scenario]:
    """Wait until every leak scenario has what it should, or the batch time is up (then tests say what's missing)."""
    op = mw_operator
    started = time.monotonic()

    def done() -> bool:
        for key in ("heap", "s3", "evict", "dry", "tls", "pf", "limit"):
            sc = scenarios[key]
            if not (get_mw(op.custom, sc.namespace, sc.mw).get("status") or {}).get("captures"):
                return False
        scale = op.apps.read_namespaced_deployment("native", scenarios["scale"].namespace)
        actions = (get_mw(op.custom, scenarios["scale"].namespace, "native").get("status") or {}).get(
            "lastActions"
        ) or []
        return scale.spec.replicas == 2 and any(a.get("result") == "AtMaxReplicas" for a in actions)

    while time.monotonic() - started < BATCH_SECONDS and not done():
        time.sleep(3)
    remaining = 150 - (time.monotonic() - started)
    if remaining > 0:  # the healthy target must be watched long enough to mean something
        time.sleep(remaining)
    return scenarios


def _status(op: Operator, sc: Scenario, name: str | None = None) -> dict[str, Any]:
    return get_mw(op.custom, sc.namespace, name or sc.mw).get("status") or {}


@pytest.mark.parametrize("key", ["heap", "evict", "dry", "tls"])
def test_leak_detected_and_captured_into_the_pvc(
    mw_operator: Operator, settled: dict[str, Scenario], key: str
) -> None:
    op, sc = mw_operator, settled[key]
    status = _status(op, sc)
    assert status.get("captures"), f"no capture in status:\n{dump(status)}"
    capture = status["captures"][-1]  # the oldest: a replacement pod may have been caught since
    assert capture["pod"] in sc.first_pods and capture["rule"] and capture["summary"]
    assert capture["location"].startswith("file:///var/lib/memorywatch/captures/") or capture[
        "location"
    ].startswith("file://"), capture
    assert condition(get_mw(op.custom, sc.namespace, sc.mw), "LeakDetected")["status"] == "True"
    assert events(op.core, sc.namespace, reason="LeakDetected", kind="MemoryWatch"), (
        "LeakDetected event on the MemoryWatch"
    )
    assert events(op.core, sc.namespace, reason="LeakDetected", kind="Pod"), "LeakDetected event on the pod"
    assert events(op.core, sc.namespace, reason="ProfilesCaptured", kind="MemoryWatch")
    folders = [m.parent for m in (op.store / sc.namespace / sc.mw).glob("*/*/manifest.json")]
    assert folders, f"no capture in the PVC directory {op.store}"
    for f in folders[0].iterdir():
        if f.name.endswith(".pb.gz"):
            go_tool_pprof_top(f)


def test_operator_health_and_metrics(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    ip = mw_operator.pod().status.pod_ip
    assert http_get(f"http://{ip}:8080/healthz")[0] == 200
    code, text = http_get(f"http://{ip}:9090/metrics")
    assert code == 200
    for name in ("memorywatch_scrapes_total", "memorywatch_scrape_duration_seconds_bucket", "memorywatch_breaches_total",
                 "memorywatch_captures_total", "memorywatch_actions_total", "memorywatch_build_info", "memorywatch_targets"):  # fmt: skip
        assert name in text, f"{name} missing from /metrics"
    assert "pod=" not in text, "no pod label: one series per pod would grow with the cluster"
    pods = [p for sc in settled.values() for p in sc.first_pods]
    assert not [p for p in pods if p in text], "no pod names in metric labels"
    # MemoryWatch names appear only as the per-watch series' `memorywatch` label (one per object, for the alerts).
    named = [line for line in text.splitlines() if "leaky" in line and not line.startswith("#")]
    assert named and all(
        line.startswith("memorywatch_watch_") and 'memorywatch="leaky"' in line for line in named
    )


def test_heap_capture_names_the_leaking_function(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    sc = settled["heap"]
    capture = _status(mw_operator, sc)["captures"][0]
    assert capture["rule"] == "heap-growth" and "main.retainRecords" in capture["summary"], capture


def test_goroutine_leak_captured_into_s3(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    sc = settled["s3"]
    status = _status(mw_operator, sc)
    assert status.get("captures"), dump(status)
    capture = status["captures"][0]
    assert capture["location"].startswith(f"s3://{sc.extra['bucket']}/captures/"), capture
    assert "main.blockForever" in capture["summary"]
    keys = [
        o["Key"]
        for o in sc.extra["s3"]
        .list_objects_v2(Bucket=sc.extra["bucket"], Prefix="captures/")
        .get("Contents", [])
    ]
    assert any(k.endswith("/manifest.json") for k in keys) and any(k.endswith("/heap.pb.gz") for k in keys), (
        keys
    )
    heap_key = next(k for k in keys if k.endswith("/goroutine.pb.gz"))
    local = pathlib.Path("/tmp") / f"{uuid.uuid4().hex}-goroutine.pb.gz"
    sc.extra["s3"].download_file(sc.extra["bucket"], heap_key, str(local))
    try:
        assert "main.blockForever" in go_tool_pprof_top(local)
    finally:
        local.unlink()
    assert "AWS_SECRET" not in dump(status) and mw_cluster_secret_not_in(status, mw_operator)


def mw_cluster_secret_not_in(status: dict[str, Any], op: Operator) -> bool:
    return op.cluster.s3_secret_key not in dump(status)


def test_evict_pod_replaces_the_leaking_pod(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    op, sc = mw_operator, settled["evict"]
    status = _status(op, sc)
    assert any(a["action"] == "EvictPod" and a["result"] == "Done" for a in status.get("lastActions", [])), (
        dump(status)
    )
    now = [p.metadata.name for p in running_pods(op.core, sc.namespace, f"app={sc.app}")]
    assert now and not set(now) & set(sc.first_pods), (
        f"the evicted pod was replaced: before {sc.first_pods}, now {now}"
    )
    assert events(op.core, sc.namespace, reason="ActionTaken")


def test_scale_grows_by_the_step_and_stops_at_max(
    mw_operator: Operator, settled: dict[str, Scenario]
) -> None:
    op, sc = mw_operator, settled["scale"]
    status = _status(op, sc)
    assert op.apps.read_namespaced_deployment(sc.app, sc.namespace).spec.replicas == 2, dump(status)
    results = [a["result"] for a in status.get("lastActions", []) if a["action"] == "Scale"]
    assert "Done" in results and "AtMaxReplicas" in results, results
    assert status["captures"][0]["rule"] == "non-heap-growth"


def test_dry_run_changes_nothing_and_says_what_it_would_do(
    mw_operator: Operator, settled: dict[str, Scenario]
) -> None:
    op, sc = mw_operator, settled["dry"]
    status = _status(op, sc)
    dry = [a for a in status.get("lastActions", []) if a["dryRun"]]
    assert dry and dry[0]["result"] == "DryRun" and "would" in dry[0]["message"], dump(status)
    assert [p.metadata.name for p in running_pods(op.core, sc.namespace, f"app={sc.app}")] == sc.first_pods
    skipped = events(op.core, sc.namespace, reason="ActionSkipped")
    assert skipped and "would" in skipped[0].message


def test_https_with_bearer_token_and_no_secret_leaks(
    mw_operator: Operator, settled: dict[str, Scenario]
) -> None:
    op, sc = mw_operator, settled["tls"]
    status = _status(op, sc)
    assert status.get("captures"), dump(status)
    token = sc.extra["token"]
    assert token not in dump(status)
    assert all(token not in (e.message or "") for e in events(op.core, sc.namespace))
    pod = op.pod()
    assert token not in op.cluster.container_log(op.namespace, pod.metadata.name, "memorywatch")


def test_container_memory_limit_forecast(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    status = _status(mw_operator, settled["limit"])
    assert status.get("captures") and status["captures"][0]["rule"] == "near-limit", dump(status)
    summary = status["captures"][0]["summary"]
    assert "600 MiB limit" in summary, f"forecast against the app container's own 600Mi, not 2.6Gi: {summary}"


def test_port_forward_access(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    status = _status(mw_operator, settled["pf"])
    assert status.get("captures") and status["captures"][0]["rule"] == "goroutine-leak", dump(status)


def test_healthy_service_gets_no_breach_and_no_action(
    mw_operator: Operator, settled: dict[str, Scenario]
) -> None:
    op, sc = mw_operator, settled["healthy"]
    status = _status(op, sc)
    assert status.get("targets") == 1 and not status.get("captures") and not status.get("lastActions"), dump(
        status
    )
    assert condition(get_mw(op.custom, sc.namespace, sc.mw), "ScrapesHealthy")["status"] == "True"
    assert not events(op.core, sc.namespace, reason="LeakDetected")
    assert [p.metadata.name for p in running_pods(op.core, sc.namespace, f"app={sc.app}")] == sc.first_pods


def test_a_watch_selecting_nothing_says_so(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    cond = condition(get_mw(mw_operator.custom, settled["iso"].namespace, "nothing"), "TargetsResolved")
    assert (
        cond["status"] == "False" and cond["reason"] == "NoPodsSelected" and "no-such-app" in cond["message"]
    )


def test_isolation_from_other_namespaces(mw_operator: Operator, settled: dict[str, Scenario]) -> None:
    op, sc = mw_operator, settled["iso"]
    pods = get_mw(op.custom, sc.namespace, "steal-pods")
    assert condition(pods, "TargetsResolved")["reason"] == "NoPodsSelected", dump(pods.get("status"))
    assert (pods.get("status") or {}).get("targets") == 0
    secret = get_mw(op.custom, sc.namespace, "steal-secret")
    cond = condition(secret, "TargetsResolved")
    assert cond["status"] == "False" and "only-in-b" in cond["message"] and sc.namespace in cond["message"], (
        dump(secret.get("status"))
    )
    assert (secret.get("status") or {}).get("targets") == 0


def test_operator_survives_an_api_server_restart(
    mw_operator: Operator, settled: dict[str, Scenario], cluster: Cluster
) -> None:
    """The API server goes away and comes back: the operator keeps its watches and serves new ones."""
    import signal

    from e2e_harness import run_hack

    op = mw_operator
    status = json.loads(run_hack("status", "--json", timeout=60).stdout)
    apiserver = next(c for c in status["components"] if c["component"] == "kube-apiserver")
    os.kill(apiserver["pid"], signal.SIGKILL)
    time.sleep(5)  # the operator's watches and status writes fail meanwhile
    up = run_hack("up", timeout=600)
    assert up.returncode == 0, up.stderr[-3000:]
    sc = settled["healthy"]
    _apply(op, sc.namespace, memorywatch("after-restart", sc.app))
    fresh = wait_for(lambda: (_status(op, sc, "after-restart").get("targets") == 1) and _status(op, sc, "after-restart"), 120,
                     "a MemoryWatch created after the API server restart to be served")  # fmt: skip
    assert condition(get_mw(op.custom, sc.namespace, "after-restart"), "Ready")["status"] == "True", dump(
        fresh
    )
    assert op.pod() is not None and _ready(op.pod().status.pod_ip), "the operator itself kept running"


def test_operator_restart_leaves_no_duplicate_capture_or_action(
    mw_operator: Operator, settled: dict[str, Scenario]
) -> None:
    op = mw_operator

    def captured(key: str) -> dict[str, int]:
        """Captures per pod already captured before the restart: (pod folder -> manifests)."""
        sc = settled[key]
        return {
            p.name: len(list(p.glob("*/manifest.json")))
            for p in (op.store / sc.namespace / sc.mw).iterdir()
            if p.is_dir()
        }

    before = {k: _status(op, settled[k]) for k in ("heap", "dry", "evict")}
    stored = {k: captured(k) for k in ("heap", "dry")}
    old = op.pod()
    op.core.delete_namespaced_pod(old.metadata.name, op.namespace)
    wait_for(
        lambda: (p := op.pod()) is not None and p.metadata.name != old.metadata.name and p,
        120,
        "a new operator pod",
    )
    wait_for(
        lambda: _ready(op.pod().status.pod_ip),
        120,
        "the new operator to be ready",
    )

    def scraping() -> bool:
        try:
            code, text = http_get(f"http://{op.pod().status.pod_ip}:9090/metrics")
        except OSError:  # not listening yet
            return False
        ok = [ln for ln in text.splitlines() if ln.startswith('memorywatch_scrapes_total{result="ok"}')]
        return code == 200 and bool(ok) and float(ok[0].split()[-1]) > 0

    # The quiet period counts from the new operator's first scrapes, not from its readiness.
    wait_for(scraping, 120, "the new operator to scrape its targets")
    time.sleep(75)  # more than a window plus warm-up: a forgetful operator would capture again by now
    for key in ("heap", "dry"):
        after = _status(op, settled[key])
        old_pods = {c["pod"] for c in before[key].get("captures", [])}
        again = [c for c in after.get("captures", []) if c["pod"] in old_pods]
        assert len(again) == len([c for c in before[key].get("captures", [])]), (
            f"{key}: duplicate capture\n{dump(after)}"
        )
        now = captured(key)
        assert all(now.get(pod, 0) == n for pod, n in stored[key].items()), (
            f"{key}: store {stored[key]} -> {now}"
        )
    done_before = [a for a in before["evict"].get("lastActions", []) if a["result"] == "Done"]
    done_after = [a for a in _status(op, settled["evict"]).get("lastActions", []) if a["result"] == "Done"]
    assert len(done_after) == len(done_before), "the eviction was not repeated after the restart"
    partial = list(op.store.glob("*/*/*/.*partial*"))
    assert not partial, f"partial captures left behind: {partial}"
