"""A capture's files for whoever may read its MemoryCapture, end to end: the chart installed with helm (the
`mw_operator` fixture: the operator image as the chart's ServiceAccount, its capture-files APIService
`v1alpha1.files.memorywatch.io`), a real Go service leaking, and `kubectl memorywatch` (kubectl's plugin lookup of
the installed `kubectl-memorywatch` script) run with a kubeconfig holding only a ServiceAccount's own token.

A ServiceAccount with a Role of get/list on memorycaptures (both groups, as the chart's viewer role) in the
service's namespace lists the capture and downloads its files, from the operator's PVC through the kube-apiserver's
aggregation layer and from S3 (versitygw) through presigned URLs, each byte-identical to what the capture stored;
one without that Role gets a 403 naming what to grant and no file. Neither has any access to the operator's
namespace (checked with `kubectl auth can-i`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import uuid
from typing import Any

import pytest
from e2e_harness import Cluster
from operator_support import (
    GROUP,
    RELEASE,
    VERSION,
    dump,
    get_mw,
    memorywatch,
    new_namespace,
    token_kubeconfig,
    upgrade_operator,
    wait_for,
)

# The operator fixture (helm install of the chart with the built image) is test_operator.py's, reused as is.
from test_operator import Operator, _apply, _deploy, _secret, mw_operator  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
CAPTURES = "memorycaptures"
APISERVICE = "v1alpha1.files.memorywatch.io"


def _captures(op: Operator, namespace: str) -> list[dict[str, Any]]:
    return op.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, CAPTURES)["items"]  # type: ignore[no-any-return]


def _service_account(
    op: Operator, cluster: Cluster, ns: str, name: str, out: pathlib.Path, *, reader: bool
) -> pathlib.Path:
    """A ServiceAccount in `ns` (with a Role of only get/list on memorycaptures when `reader`) and a kubeconfig
    holding its own token and nothing else."""
    cluster.kubectl("-n", ns, "create", "serviceaccount", name)
    if reader:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": f"{name}-captures", "namespace": ns},
            "rules": [{"apiGroups": ["memorywatch.io", "files.memorywatch.io"],
                       "resources": [CAPTURES], "verbs": ["get", "list"]}],
        }  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=__import__("json").dumps(role))
        cluster.kubectl("-n", ns, "create", "rolebinding", f"{name}-captures", f"--role={name}-captures",
                        f"--serviceaccount={ns}:{name}")  # fmt: skip
    token = op.core.create_namespaced_service_account_token(
        name, ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    return token_kubeconfig(cluster, out, name, ns, token)


def _plugin(cluster: Cluster, kubeconfig: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl memorywatch ARGS`: kubectl finds `kubectl-memorywatch` (this venv's console script) on the PATH."""
    bindir = pathlib.Path(sys.executable).parent
    assert (bindir / "kubectl-memorywatch").exists(), "the package's kubectl-memorywatch script is installed"
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    env.pop("AWS_ACCESS_KEY_ID", None), env.pop("AWS_SECRET_ACCESS_KEY", None)
    return subprocess.run([str(cluster.kubectl_path), "memorywatch", *args], capture_output=True, text=True,
                          timeout=180, env=env, check=False)  # fmt: skip


def _route_to_operator_pod(op: Operator, cluster: Cluster) -> None:
    """Let the API server reach the operator pod's 127.x address. The local control plane has no kube-proxy and
    its EndpointSlices refuse loopback addresses, so the API server can dial neither the chart's ClusterIP nor its
    endpoint; the chart's Service is replaced by an ExternalName Service of the same name naming the pod IP, which
    the aggregator dials (docs/local-cluster.md, "The aggregation layer"). The server name the API server checks
    stays `<chart service>.<namespace>.svc`, against the chart's caBundle; everything else is the chart's."""
    import json

    chart = json.loads(cluster.kubectl("get", "apiservice", APISERVICE, "-o", "json").stdout)["spec"]
    service = f"{RELEASE}-memorywatch-files"
    assert chart["service"] == {"name": service, "namespace": op.namespace, "port": 443}
    assert chart["caBundle"] and not chart.get("insecureSkipTLSVerify")
    cluster.kubectl("-n", op.namespace, "delete", "service", service)
    cluster.kubectl("-n", op.namespace, "create", "service", "externalname", service,
                    f"--external-name={op.pod().status.pod_ip}", "--tcp=8443:8443")  # fmt: skip
    patch = {"spec": {"service": {"name": service, "namespace": op.namespace, "port": 8443}}}
    cluster.kubectl("patch", "apiservice", APISERVICE, "--type=merge", "-p", json.dumps(patch))


@pytest.fixture(scope="module")
def files_api(mw_operator: Operator, cluster: Cluster) -> Operator:  # noqa: F811 - the fixture imported above
    """The helm-installed operator with `fileServer.enabled: true` (off by default and in the shared fixture: see
    test_operator.py) and its capture-files APIService Available."""
    op = mw_operator
    upgrade_operator(cluster, op.core, op.namespace, "fileServer.enabled=true")
    assert "--files-port" in op.pod().spec.containers[0].args
    _route_to_operator_pod(mw_operator, cluster)
    wait_for(lambda: _apiservice_available(cluster), 120, f"APIService {APISERVICE} to be Available",
             lambda: cluster.kubectl("get", "apiservice", APISERVICE, "-o", "yaml", check=False).stdout)  # fmt: skip
    return mw_operator


def _apiservice_available(cluster: Cluster) -> bool:
    proc = cluster.kubectl("get", "apiservice", APISERVICE, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Available')].status}", check=False)  # fmt: skip
    return proc.stdout.strip() == "True"


def _check_files(folder: pathlib.Path, spec: dict[str, Any]) -> None:
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f["name"] for f in spec["files"]), names  # no partial file left behind
    for f in spec["files"]:
        data = (folder / f["name"]).read_bytes()
        if f.get("sha256"):
            assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"]), f["name"]
    assert b'"pod"' in (folder / "manifest.json").read_bytes()


def _open_in_pprof(cluster: Cluster, kubeconfig: pathlib.Path, name: str, tmp_path: pathlib.Path) -> None:
    import shutil
    import time

    import httpx

    bindir = pathlib.Path(sys.executable).parent
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), XDG_CACHE_HOME=str(tmp_path / "cache"))
    no_go = subprocess.run([str(bindir / "kubectl-memorywatch"), "captures", "open", name], capture_output=True,
                           text=True, timeout=180, env={**env, "PATH": "/usr/bin:/bin"}, check=False)  # fmt: skip
    assert no_go.returncode == 1 and "Go is not installed" in no_go.stdout, no_go
    assert (
        "go tool pprof -http=127.0.0.1:" in no_go.stdout
        and " -diff_base " in no_go.stdout
        and "heap.pb.gz" in no_go.stdout
    )
    go = shutil.which("go")
    assert go, "the e2e tests build Go programs, so Go is on the PATH"
    path = f"{pathlib.Path(go).parent}:/usr/bin:/bin"
    proc = subprocess.Popen([str(bindir / "kubectl-memorywatch"), "captures", "open", name, "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "PATH": path})  # fmt: skip
    try:
        deadline, lines = time.monotonic() + 120, []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Serving web UI on " in line:
                break
            assert line or proc.poll() is None, "".join(lines)
        url = line.split("Serving web UI on ", 1)[1].strip()
        page = httpx.get(url, follow_redirects=True, timeout=30)
        assert (
            page.status_code == 200
            and "main.retain" in httpx.get(url.rstrip("/") + "/ui/top", timeout=30).text
        )
        assert any("-diff_base" in x for x in lines), lines
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def _no_access_to_operator(cluster: Cluster, op: Operator, ns: str, *accounts: str) -> None:
    for sa in accounts:
        for verb, what in (("get", "pods"), ("get", "persistentvolumeclaims"), ("create", "pods/exec"),
                           ("get", "services/proxy")):  # fmt: skip
            can = cluster.kubectl("auth", "can-i", verb, what, "-n", op.namespace,
                                  f"--as=system:serviceaccount:{ns}:{sa}", check=False).stdout.strip()  # fmt: skip
            assert can == "no", (sa, verb, what)


def test_a_capture_reader_downloads_files_from_the_pvc_and_a_stranger_cannot(
    files_api: Operator,
    cluster: Cluster,
    tmp_path: pathlib.Path,
) -> None:
    op = files_api
    ns = new_namespace(op.core, "e2e-files")
    _deploy(op, ns, "leaky", "heap-leak", rate=1 << 20)
    _apply(op, ns, memorywatch("leaky", "leaky"))
    capture = wait_for(lambda: _captures(op, ns), 300, "a MemoryCapture",
                       lambda: dump(get_mw(op.custom, ns, "leaky").get("status") or {}))[0]  # fmt: skip
    name, spec = capture["metadata"]["name"], capture["spec"]
    assert spec["storage"]["location"].startswith("file://"), dump(spec["storage"])

    reader = _service_account(op, cluster, ns, "reader", tmp_path / "reader.kubeconfig", reader=True)
    stranger = _service_account(op, cluster, ns, "stranger", tmp_path / "stranger.kubeconfig", reader=False)
    _no_access_to_operator(cluster, op, ns, "reader", "stranger")

    listed = _plugin(cluster, reader, "captures", "list")
    assert listed.returncode == 0 and name in listed.stdout, listed.stderr + listed.stdout
    shown = _plugin(cluster, reader, "captures", "show", name)
    assert shown.returncode == 0 and spec["pod"] in shown.stdout and "heap.pb.gz" in shown.stdout, shown

    got = _plugin(cluster, reader, "captures", "get", name, "-o", str(tmp_path / "reader"))
    assert got.returncode == 0, got.stderr + got.stdout
    assert "sha256 ok" in got.stderr, got.stderr
    _check_files(tmp_path / "reader" / name, spec)
    # The same bytes as in the operator's PVC.
    on_pvc = op.store / spec["storage"]["path"] / "heap.pb.gz"
    assert (tmp_path / "reader" / name / "heap.pb.gz").read_bytes() == on_pvc.read_bytes()

    # `open`: without Go it says so and prints the command; with Go, pprof's web UI serves the heap diff.
    _open_in_pprof(cluster, reader, name, tmp_path)

    # No Role: refused by the API server, nothing written.
    denied = _plugin(cluster, stranger, "captures", "get", name, "-o", str(tmp_path / "stranger"))
    assert denied.returncode == 1, denied
    assert "forbidden" in denied.stderr and CAPTURES in denied.stderr, denied.stderr
    assert not (tmp_path / "stranger").exists() or not any((tmp_path / "stranger").rglob("*.gz"))
    assert _plugin(cluster, stranger, "captures", "list").returncode == 1

    # A Role on the MemoryCapture but not its files' group: the API server refuses the files API.
    only_objects = _service_account(op, cluster, ns, "half", tmp_path / "half.kubeconfig", reader=False)
    cluster.kubectl(
        "-n", ns, "create", "role", "half", "--verb=get,list", "--resource=memorycaptures.memorywatch.io"
    )
    cluster.kubectl("-n", ns, "create", "rolebinding", "half", "--role=half", f"--serviceaccount={ns}:half")
    half = _plugin(cluster, only_objects, "captures", "get", name, "-o", str(tmp_path / "half"))
    assert half.returncode == 1 and "files.memorywatch.io" in half.stderr, half.stderr

    # The other way round: the API server lets the request through, the operator's SubjectAccessReview on the
    # MemoryCapture itself refuses it (its own Status, naming the group memorywatch.io).
    files_only = _service_account(op, cluster, ns, "files-only", tmp_path / "fo.kubeconfig", reader=False)
    cluster.kubectl("-n", ns, "create", "role", "files-only", "--verb=get",
                    "--resource=memorycaptures.files.memorywatch.io")  # fmt: skip
    cluster.kubectl("-n", ns, "create", "rolebinding", "files-only", "--role=files-only",
                    f"--serviceaccount={ns}:files-only")  # fmt: skip
    raw = f"/apis/files.memorywatch.io/v1alpha1/namespaces/{ns}/memorycaptures/{name}"
    refused = subprocess.run([str(cluster.kubectl_path), f"--kubeconfig={files_only}", "get", "--raw",
                              f"{raw}?file=heap.pb.gz"], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode != 0 and not refused.stdout, refused
    user = f"system:serviceaccount:{ns}:files-only"
    assert (
        f'User "{user}" cannot get resource "memorycaptures" in API group "memorywatch.io"' in refused.stderr
    )
    assert "files.memorywatch.io" not in refused.stderr, (
        refused.stderr
    )  # the operator refused, not the API server
    listing = subprocess.run([str(cluster.kubectl_path), f"--kubeconfig={reader}", "get", "--raw", raw],
                             capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    body = __import__("json").loads(listing)
    assert body["kind"] == "MemoryCaptureFiles" and body["source"] == "apiserver"
    assert {f["name"]: f.get("sha256") for f in body["files"]} == {
        f["name"]: f.get("sha256") for f in spec["files"]
    }

    # A MemoryCapture of another namespace stays out of reach of this namespace's reader.
    other = new_namespace(op.core, "e2e-files-other")
    assert _plugin(cluster, reader, "captures", "get", name, "-n", other).returncode == 1
    cluster.kubectl("-n", ns, "delete", "memorywatch", "leaky", "--wait=true", "--timeout=90s")
    op.core.delete_namespace(ns)
    op.core.delete_namespace(other)


def test_a_capture_reader_downloads_s3_files_through_presigned_urls(
    files_api: Operator,
    cluster: Cluster,
    tmp_path: pathlib.Path,
) -> None:
    import boto3

    op = files_api
    ns = new_namespace(op.core, "e2e-files-s3")
    bucket = f"mw-files-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint, aws_access_key_id=cluster.s3_access_key,
                      aws_secret_access_key=cluster.s3_secret_key, region_name="us-east-1")  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    _secret(op, ns, "s3-creds", {"AWS_ACCESS_KEY_ID": cluster.s3_access_key,
                                 "AWS_SECRET_ACCESS_KEY": cluster.s3_secret_key})  # fmt: skip
    _deploy(op, ns, "spinner", "goroutine-leak", rate=20)
    storage = {"s3": {"bucket": bucket, "prefix": "captures", "endpoint": cluster.s3_endpoint,
                      "region": "us-east-1", "credentialsSecretRef": {"name": "s3-creds"}}}  # fmt: skip
    _apply(op, ns, memorywatch("spinner", "spinner", capture={"storage": storage}))
    capture = wait_for(lambda: _captures(op, ns), 300, "a MemoryCapture in S3",
                       lambda: dump(get_mw(op.custom, ns, "spinner").get("status") or {}))[0]  # fmt: skip
    name, spec = capture["metadata"]["name"], capture["spec"]
    assert spec["storage"]["location"].startswith(f"s3://{bucket}/"), dump(spec["storage"])

    reader = _service_account(op, cluster, ns, "reader", tmp_path / "reader.kubeconfig", reader=True)
    stranger = _service_account(op, cluster, ns, "stranger", tmp_path / "stranger.kubeconfig", reader=False)
    _no_access_to_operator(cluster, op, ns, "reader", "stranger")
    got = _plugin(cluster, reader, "captures", "get", name, "-o", str(tmp_path / "reader"))
    assert got.returncode == 0, got.stderr + got.stdout
    _check_files(tmp_path / "reader" / name, spec)
    key = f"captures/{spec['storage']['path']}/goroutine.pb.gz"
    if (tmp_path / "reader" / name / "goroutine.pb.gz").exists():
        assert (tmp_path / "reader" / name / "goroutine.pb.gz").read_bytes() == s3.get_object(
            Bucket=bucket, Key=key)["Body"].read()  # fmt: skip

    denied = _plugin(cluster, stranger, "captures", "get", name, "-o", str(tmp_path / "stranger"))
    assert denied.returncode == 1 and "forbidden" in denied.stderr, denied.stderr
    assert not any((tmp_path / "stranger").rglob("*.gz")) if (tmp_path / "stranger").exists() else True
    cluster.kubectl("-n", ns, "delete", "memorywatch", "spinner", "--wait=true", "--timeout=90s")
    wait_for(lambda: not _captures(op, ns), 120, "the garbage collector to delete the MemoryCaptures")
    op.core.delete_namespace(ns)
