"""MemoryCaptures end to end: the chart installed with helm and the operator running as the chart's
ServiceAccount (the `mw_operator` fixture of test_operator.py), a real Go service leaking behind a real API server.

A leak's capture produces a MemoryCapture in the service's namespace, owned by the MemoryWatch, whose files and
sha256 digests match what is in the operator's PVC; `kubectl get memorycaptures` shows the printer columns; a
namespace viewer (the built-in `view` role, through the chart's aggregated <release>-memorywatch-capture-viewer) lists them
and cannot delete them; deleting a MemoryCapture deletes its folder in the PVC (the finalizer); deleting the
MemoryWatch garbage-collects its MemoryCaptures (kube-controller-manager's garbage collector) and so their files;
deleting a MemoryCapture of a watch capturing into S3 (versitygw) deletes exactly its objects.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import uuid
from typing import Any

import pytest
from e2e_harness import Cluster
from operator_support import GROUP, VERSION, dump, get_mw, memorywatch, new_namespace, wait_for

# The operator fixture (helm install of the chart with the built image) is test_operator.py's, reused as is.
from test_operator import Operator, _apply, _deploy, _secret, mw_operator  # noqa: F401

from memorywatch.api.capture_object import LABEL_WATCH_UID
from memorywatch.k8s.client import Kube

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
CAPTURES = "memorycaptures"


def _captures(op: Operator, namespace: str) -> list[dict[str, Any]]:
    return op.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, CAPTURES)["items"]  # type: ignore[no-any-return]


def _local(op: Operator, location: str) -> pathlib.Path:
    """The capture folder on this machine: the PVC's hostPath directory plus the capture's path."""
    assert location.startswith("file://"), location
    path = "/".join(location.split("/")[-4:])
    return op.store / path


def test_memorycaptures_follow_captures_and_their_deletion_deletes_files(
    mw_operator: Operator,  # noqa: F811 - the fixture imported above
    cluster: Cluster,
) -> None:
    op = mw_operator
    ns = new_namespace(op.core, "e2e-mcap")
    _deploy(op, ns, "leaky", "heap-leak", rate=1 << 20)
    _apply(op, ns, memorywatch("leaky", "leaky", capture={"cooldown": "15s"}))
    mw = get_mw(op.custom, ns, "leaky")

    first = wait_for(lambda: _captures(op, ns), 300, "a MemoryCapture",
                       lambda: dump(get_mw(op.custom, ns, "leaky").get("status") or {}))[0]  # fmt: skip
    name, spec = first["metadata"]["name"], first["spec"]
    assert first["metadata"]["ownerReferences"][0]["uid"] == mw["metadata"]["uid"]
    assert first["metadata"]["finalizers"] == ["memorywatch.io/finalizer"]
    assert spec["rule"] == "heap-growth" and spec["pod"].startswith("leaky-")
    assert spec["podUID"] and spec["heapGrowth"], dump(spec)
    folder = _local(op, spec["storage"]["location"])
    digests = {f["name"]: f.get("sha256") for f in spec["files"]}
    assert {"heap.pb.gz", "manifest.json"} <= set(digests)
    for f in spec["files"]:
        if f["name"] == "manifest.json":
            continue
        data = (folder / f["name"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"]), f["name"]
    # The MemoryWatch's status points to it.
    pointers = wait_for(
        lambda: [
            c.get("memoryCapture") for c in get_mw(op.custom, ns, "leaky")["status"].get("captures", [])
        ],
        60,
        "the status pointer",
    )
    assert name in pointers and len(pointers) <= 5

    # kubectl's printer columns.
    table = cluster.kubectl("get", CAPTURES, "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "POD", "RULE", "SIZE", "ACTION", "AGE"], table
    row = next(line for line in table if line.startswith(name + " "))
    assert spec["pod"] in row and "heap-growth" in row and "files," in row and "None" in row, row

    # A namespace viewer reads them through the aggregated role, and cannot delete them.
    cluster.kubectl("-n", ns, "create", "serviceaccount", "reader")
    cluster.kubectl("-n", ns, "create", "rolebinding", "reader-view", "--clusterrole=view",
                    f"--serviceaccount={ns}:reader")  # fmt: skip
    reader = f"--as=system:serviceaccount:{ns}:reader"
    listed = wait_for(
        lambda: (
            (p := cluster.kubectl("get", CAPTURES, "-n", ns, reader, "-o", "name", check=False)).returncode
            == 0
            and p.stdout
        ),
        60,
        "the viewer to list MemoryCaptures (ClusterRole aggregation)",
    )
    assert f"memorycapture.memorywatch.io/{name}" in listed
    assert (
        cluster.kubectl("auth", "can-i", "delete", CAPTURES, "-n", ns, reader, check=False).stdout.strip()
        == "no"
    )
    other = new_namespace(op.core, "e2e-mcap-other")
    assert cluster.kubectl("get", CAPTURES, "-n", other, reader, check=False).returncode != 0

    # Deleting the MemoryCapture deletes its folder in the PVC, then the object goes.
    assert folder.is_dir()
    cluster.kubectl("-n", ns, "delete", CAPTURES, name, "--wait=true", "--timeout=90s")
    assert not folder.exists(), f"{folder} is still there"
    assert not list(folder.parent.glob(f".{folder.name}*")), "nothing hidden left behind"

    # More captures come (cooldown 15s); deleting the MemoryWatch garbage-collects them and so their files.
    later = wait_for(lambda: len(more := [c for c in _captures(op, ns) if c["metadata"]["name"] != name]) >= 2
                     and more, 240, "two more MemoryCaptures")  # fmt: skip
    # The operator's own paged read of a watch's MemoryCaptures (what a takeover and the sweep use), one
    # object per page from the real API server's continue tokens: every capture, none twice.
    kube = Kube(op.custom.api_client, instance="e2e")
    selector = f"{LABEL_WATCH_UID}={mw['metadata']['uid']}"
    paged = [o["metadata"]["name"] for o in asyncio.run(kube.list_captures(ns, selector, page_size=1))]
    assert len(paged) == len(set(paged)) >= 2, paged
    assert (
        {c["metadata"]["name"] for c in later}
        <= set(paged)
        <= {c["metadata"]["name"] for c in _captures(op, ns)}
    )
    folders = [_local(op, c["spec"]["storage"]["location"]) for c in later]
    assert all(f.is_dir() for f in folders)
    cluster.kubectl("-n", ns, "delete", "memorywatch", "leaky", "--wait=true", "--timeout=90s")
    wait_for(lambda: not _captures(op, ns), 120, "the garbage collector to delete the MemoryCaptures",
               lambda: dump(_captures(op, ns)))  # fmt: skip
    assert not any(f.exists() for f in folders), "the finalizer deleted their files"
    op.core.delete_namespace(ns)
    op.core.delete_namespace(other)


def test_deleting_an_s3_memorycapture_deletes_its_objects(
    mw_operator: Operator,  # noqa: F811 - the fixture imported above
    cluster: Cluster,
) -> None:
    """The finalizer rebuilds the watch's S3 store from the settings the MemoryCapture recorded, with the
    credentials from the Secret in the watch's namespace (by consent), and deletes exactly that capture."""
    import boto3

    op = mw_operator
    ns = new_namespace(op.core, "e2e-mcap-s3")
    bucket = f"mw-mcap-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint, aws_access_key_id=cluster.s3_access_key,
                      aws_secret_access_key=cluster.s3_secret_key, region_name="us-east-1")  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    keys = {"AWS_ACCESS_KEY_ID": cluster.s3_access_key, "AWS_SECRET_ACCESS_KEY": cluster.s3_secret_key}
    _secret(op, ns, "s3-creds", keys)
    _deploy(op, ns, "spinner", "goroutine-leak", rate=20)
    storage = {"s3": {"bucket": bucket, "prefix": "captures", "endpoint": cluster.s3_endpoint,
                      "region": "us-east-1", "credentialsSecretRef": {"name": "s3-creds"}}}  # fmt: skip
    _apply(op, ns, memorywatch("spinner", "spinner", capture={"storage": storage}))

    first = wait_for(lambda: _captures(op, ns), 300, "a MemoryCapture in S3",
                     lambda: dump(get_mw(op.custom, ns, "spinner").get("status") or {}))[0]  # fmt: skip
    stored = first["spec"]["storage"]
    assert stored["location"].startswith(f"s3://{bucket}/captures/{ns}/spinner/"), dump(stored)
    assert stored["storedIn"] == "primary" and stored["s3"]["credentialsSecretRef"]["name"] == "s3-creds"
    prefix = f"captures/{stored['path']}/"

    def objects() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents") or []]

    names = {k.rsplit("/", 1)[-1] for k in objects()}
    assert {f["name"] for f in first["spec"]["files"]} <= names
    for f in first["spec"]["files"]:
        if f.get("sha256"):
            body = s3.get_object(Bucket=bucket, Key=prefix + f["name"])["Body"].read()
            assert hashlib.sha256(body).hexdigest() == f["sha256"], f["name"]
    cluster.kubectl("-n", ns, "delete", CAPTURES, first["metadata"]["name"], "--wait=true", "--timeout=90s")
    assert objects() == [], "the capture's objects are gone"
    # Leave nothing with a finalizer behind for after the operator is uninstalled.
    cluster.kubectl("-n", ns, "delete", "memorywatch", "spinner", "--wait=true", "--timeout=90s")
    wait_for(lambda: not _captures(op, ns), 120, "the garbage collector to delete the MemoryCaptures")
    op.core.delete_namespace(ns)
