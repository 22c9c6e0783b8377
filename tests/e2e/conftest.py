"""Fixtures for end-to-end tests against the local control plane (hack/local-cluster, docs/local-cluster.md).

- `cluster` (session): runs `hack/local-cluster up` (building the tools on first use), loads the operator image
  (built by `hack/build-image` before the first test, when the operator's tests are collected) and yields a `Cluster`
  with the admin kubeconfig, an ApiClient factory, the S3 endpoint and credentials and a kubectl helper.
  If this session started the cluster, it is stopped at the end (set MW_KEEP_CLUSTER=1 to keep it).
- `operator_image` (session): the operator's OCI archive, built before the first test and loaded into the cluster
  by `cluster`; a fixture that installs the chart names it (or is `mw_operator`) so the chart's default image runs.
- `namespace`: a fresh namespace per test, deleted afterwards (its pod processes are stopped).
- `pprofserver`: path of a tiny Go program (tests/e2e/testdata/pprofserver) serving net/http/pprof on -listen,
  built with the machine's `go` into a cache keyed by a hash of its source. A build failure FAILS the test.
- `deploy`: creates a Deployment that runs a local binary as its pods' command (see `deployment_manifest`).

Nothing here skips: if the cluster or a binary cannot be built, the tests fail with the error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_harness import (
    CACHE,
    HACK,
    TESTDATA,
    Cluster,
    build_go_program,
    build_operator_image,
    deployment_manifest,
    exists,
    load_image,
    run_hack,
    wait_until,
)

_tools_error: str | None = None
#: Fixtures that install the chart with the operator image: naming one makes the session build and load it.
OPERATOR_FIXTURES = frozenset({"mw_operator", "operator_image"})
_image: tuple[Path | None, str] | None = None  # the operator image archive (or None and the build error)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control-plane tools before the first e2e test runs, outside any per-test timeout (a cold build
    takes ~13 min on 2 cores; pytest-timeout would otherwise count it against the first test). A failure is
    reported by the `cluster` fixture, so every e2e test FAILS with the build error."""
    global _tools_error
    if not any(item.get_closest_marker("e2e") for item in session.items):
        return
    t0 = time.monotonic()
    proc = subprocess.run([str(HACK / "build-tools")], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        _tools_error = f"hack/build-tools failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    elif time.monotonic() - t0 > 5:
        print(f"\n{proc.stderr.strip()}", file=sys.__stderr__)
    # The operator's tests install the chart with its default image and command: build that image here too
    # (outside the per-test timeout: a cold build makes the Debian bases, ~5 min; a warm one ~1 min). A test
    # asks for it by naming a fixture of OPERATOR_FIXTURES (statically, so it is seen at collection).
    global _image
    if any(OPERATOR_FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
        t0 = time.monotonic()
        _image = build_operator_image()
        if _image[0] is not None and time.monotonic() - t0 > 5:
            print(f"\n{_image[1].strip()}", file=sys.__stderr__)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if _tools_error:
        pytest.fail(_tools_error)
    before = run_hack("status", "--json", timeout=60)
    was_running = before.returncode == 0
    if not was_running:
        # A cluster this session starts starts empty: etcd data left by an earlier run (Deployments of an
        # operator from a run that was killed, say) would come back to life and interfere.
        run_hack("down", "--purge", timeout=300)
    # First use builds the tools (several minutes on 2 cores), then the cluster starts in ~10 s.
    up = run_hack("up", timeout=3600)
    if up.returncode != 0:
        pytest.fail(
            f"hack/local-cluster up failed ({up.returncode}):\n{up.stderr[-6000:]}\n{up.stdout[-2000:]}"
        )
    kubeconfig = Path(up.stdout.strip().splitlines()[-1])
    if _image is not None:
        if _image[0] is None:
            pytest.fail(_image[1])
        load_image(_image[0])
    st = run_hack("status", "--json", timeout=60)
    info = json.loads(st.stdout)
    s3env = dict(
        line.split("=", 1) for line in Path(info["s3_env_file"]).read_text().splitlines() if "=" in line
    )
    c = Cluster(
        kubeconfig=kubeconfig,
        dir=Path(info["dir"]),
        info=info,
        s3_endpoint=s3env["MW_S3_ENDPOINT"],
        s3_access_key=s3env["AWS_ACCESS_KEY_ID"],
        s3_secret_key=s3env["AWS_SECRET_ACCESS_KEY"],
        kubectl_path=CACHE / "bin" / "kubectl",
    )
    try:
        yield c
    finally:
        c.close()
        if not was_running and not os.environ.get("MW_KEEP_CLUSTER"):
            down = run_hack("down", timeout=300)
            if down.returncode != 0:
                print(f"hack/local-cluster down failed:\n{down.stderr}", file=sys.stderr)


@pytest.fixture(scope="session")
def operator_image(cluster: Cluster) -> Path:
    """The operator's OCI archive, built before the run and loaded into the cluster (the chart's default image
    then runs from it). Name it in a fixture that installs the chart."""
    assert _image is not None and _image[0] is not None, "the operator image was not built"
    return _image[0]


@pytest.fixture
def core(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def apps(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.AppsV1Api(cluster.api_client())


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(cluster.api_client())
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{base}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"memorywatch.dev/e2e": "true"}}})
    # the ServiceAccount token controller creates "default" shortly after the namespace
    wait_until(lambda: exists(lambda: core.read_namespaced_service_account("default", name)), 30,
               f"ServiceAccount default in namespace {name}")  # fmt: skip
    yield name
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
            return False
        except ApiException as e:
            return e.status == 404

    wait_until(gone, 120, f"namespace {name} to be deleted")


@pytest.fixture(scope="session")
def pprofserver() -> Path:
    return build_go_program(TESTDATA / "pprofserver", "pprofserver")


@pytest.fixture
def deploy(cluster: Cluster, namespace: str) -> Callable[..., dict[str, Any]]:
    """deploy(name, command, **deployment_manifest kwargs) -> the created Deployment (as a dict)."""
    from kubernetes import client

    api = cluster.api_client()
    apps = client.AppsV1Api(api)

    def _deploy(name: str, command: list[str] | str | Path, **kwargs: Any) -> dict[str, Any]:
        body = deployment_manifest(name, command, **kwargs)  # type: ignore[arg-type]
        created = apps.create_namespaced_deployment(namespace, body)
        return api.sanitize_for_serialization(created)  # type: ignore[no-any-return]

    return _deploy
