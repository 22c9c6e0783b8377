"""Secrets by consent on the real API server, with the RBAC the chart renders by default: the operator cannot read
a namespace's Secret until the namespace runs the command the watch's condition gives it, and then it can. The
refusal goes through the operator's own target resolution, so the condition's reason (SecretAccessNotGranted) and
message are the ones a watch would show."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from e2e_harness import Cluster

from memorywatch.api.consent import ConsentTarget, secret_problem
from memorywatch.api.spec import parse_spec
from memorywatch.control.resolve import Resolution, TargetResolver
from memorywatch.control.secrets import SecretCache
from memorywatch.control.status import targets_resolved
from memorywatch.k8s import ForbiddenError, Kube, KubeError
from memorywatch.targets import PodInfo
from support.tools import REPO, tool_path

pytestmark = pytest.mark.e2e


@pytest.fixture
def operator_identity(cluster: Cluster, namespace: str) -> Iterator[tuple[Any, ConsentTarget]]:
    """The chart's default RBAC (helm template, a release name of its own) applied to the cluster, bound to a new
    ServiceAccount; yields an ApiClient authenticated as it and who the grant command must name."""
    from kubernetes import client

    release = f"consent-{uuid.uuid4().hex[:5]}"
    proc = subprocess.run(
        [str(tool_path("HELM")), "template", release, str(REPO / "charts" / "memorywatch"), "-n", namespace,
         "--set", "crds.install=false"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    rbac_docs = [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}]
    admin = cluster.api_client()
    applied = yaml.safe_dump_all(rbac_docs)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=applied)
    sa = f"{release}-memorywatch"
    core = client.CoreV1Api(admin)
    token = core.create_namespaced_service_account_token(sa, namespace, {"spec": {"expirationSeconds": 3600}})
    cfg = client.Configuration()
    cfg.host = cluster.info["api_server"]
    cfg.ssl_ca_cert = cluster.info["ca_file"]
    cfg.api_key = {"authorization": f"Bearer {token.status.token}"}
    api = client.ApiClient(cfg)
    cluster._clients.append(api)
    try:
        yield api, ConsentTarget(namespace, sa, f"{release}-memorywatch-secret-reader")
    finally:
        with contextlib.suppress(Exception):
            cluster.kubectl("delete", "-n", namespace, "--ignore-not-found", "-f", "-", input=applied)


async def _no_forward(namespace: str, pod: str, port: int, scheme: str) -> str:
    raise AssertionError("Direct access: no port-forward")


async def _no_close(namespace: str, pod: str, port: int) -> None:
    return None


async def _resolve(kube: Kube, namespace: str) -> Resolution:
    """What the operator's target resolution makes of a pod whose watch names the Secret pprof-token."""
    spec = parse_spec({"selector": {"matchLabels": {"app": "shop"}},
                       "endpoint": {"port": 6060, "bearerTokenSecretRef": {"name": "pprof-token"},
                                    "allowInsecureBearerToken": True}})  # fmt: skip
    pod = PodInfo(namespace, "shop-1", "uid-1", {"app": "shop"}, "127.0.0.9", "Running", False, {"6060": 6060},
                  None, None)  # fmt: skip
    return await TargetResolver(namespace, SecretCache(kube, time.time), _no_forward, _no_close).resolve(
        spec, pod
    )


async def test_secret_is_readable_only_after_the_namespace_consents(
    cluster: Cluster,
    namespace: str,
    core: Any,
    operator_identity: tuple[Any, ConsentTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, target = operator_identity
    # Who the operator is, as the chart tells it (the grant command names them).
    monkeypatch.setenv("MEMORYWATCH_POD_NAMESPACE", target.namespace)
    monkeypatch.setenv("MEMORYWATCH_SERVICE_ACCOUNT", target.service_account)
    monkeypatch.setenv("MEMORYWATCH_SECRET_READER_ROLE", target.cluster_role)
    tenant = f"tenant-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": tenant, "labels": {"memorywatch.dev/e2e": "true"}}})
    try:
        core.create_namespaced_secret(
            tenant, {"metadata": {"name": "pprof-token"}, "stringData": {"token": "s3cr3t"}}
        )
        core.create_namespaced_secret(tenant, {"metadata": {"name": "other"}, "stringData": {"token": "x"}})
        kube = Kube(api)

        refused = await _resolve(kube, tenant)
        assert (refused.target, refused.transient, refused.cause) == (None, False, "SecretAccessNotGranted")
        status, reason, message = targets_resolved(
            tenant, "app=shop", 1, 1, [refused.problem or ""], {refused.cause}
        )
        assert (status, reason) == ("False", "SecretAccessNotGranted"), "the TargetsResolved condition"
        assert "spec.endpoint.bearerTokenSecretRef" in message and "s3cr3t" not in message

        # The namespace runs the command its watch's condition gives (the variant for this Secret only).
        named = message.split("Grant it with: ", 1)[1].split(" (only this Secret)", 1)[0]
        for command in named.split(" && "):
            argv = shlex.split(command)
            assert argv[0] == "kubectl"
            cluster.kubectl(*argv[1:])

        granted = await _resolve(kube, tenant)
        assert (
            granted.problem is None and granted.target is not None and granted.target.bearer_token == "s3cr3t"
        )
        with pytest.raises(KubeError):  # consent was for the named Secret only
            await kube.secret_value(tenant, "other", "token")
    finally:
        core.delete_namespace(tenant)


async def test_binding_the_shipped_cluster_role_grants_the_namespace(
    cluster: Cluster, namespace: str, core: Any, operator_identity: tuple[Any, ConsentTarget]
) -> None:
    api, target = operator_identity
    tenant = f"tenant-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": tenant, "labels": {"memorywatch.dev/e2e": "true"}}})
    try:
        core.create_namespaced_secret(tenant, {"metadata": {"name": "ca"}, "stringData": {"ca.crt": "PEM"}})
        kube = Kube(api)
        with pytest.raises(ForbiddenError) as refused:
            await kube.secret_value(tenant, "ca", "ca.crt")
        message = secret_problem(refused.value, forbidden=True, namespace=tenant, secret="ca",
                                 field="spec.endpoint.tls.caSecretRef", target=target)  # fmt: skip
        whole = message.split(" (only this Secret), or: ", 1)[1].split(" (every Secret", 1)[0]
        cluster.kubectl(*shlex.split(whole)[1:])
        assert await kube.secret_value(tenant, "ca", "ca.crt") == "PEM"
        # ... in that namespace only.
        with pytest.raises(ForbiddenError):
            await kube.secret_value(namespace, "anything", "token")
    finally:
        core.delete_namespace(tenant)
