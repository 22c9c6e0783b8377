"""Pods into scrape targets: the port, credentials from `SecretCache`, the CA bundle as a file, and for
`access: PortForward` a local listener bridged through the API server.

A `Resolution` has a target, or a problem, or both: a target resolved with credentials served stale because the
API server failed (`problem` says so, `transient` is True). A failure that may pass (the API server answering
5xx/429, a port-forward that could not be opened) is `transient`: the controller keeps an already-watched
target, with its series, instead of dropping it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile

from memorywatch.api.consent import REASON as SECRET_ACCESS_NOT_GRANTED
from memorywatch.api.consent import ConsentTarget, secret_problem
from memorywatch.api.spec import WatchSpec
from memorywatch.control.ports import ForwardCloser, Forwarder
from memorywatch.control.secrets import SecretCache
from memorywatch.k8s import ApiUnavailable, ForbiddenError, KubeError, TooManyRequests
from memorywatch.scrape import TargetConfig, TLSConfig
from memorywatch.targets import PodInfo, pod_url, resolve_port


@dataclasses.dataclass(frozen=True)
class Resolution:
    pod: str
    target: TargetConfig | None
    port: int | None = None
    problem: str | None = None
    transient: bool = False
    #: The failure's class name (e.g. TooManyRequests) when there is a problem.
    cause: str | None = None


def _transient(e: KubeError) -> bool:
    return isinstance(e, (ApiUnavailable, TooManyRequests)) or e.status is None


def _secret_cause(e: KubeError) -> str:
    """RBAC refusing a Secret the watch names means its namespace has not consented (api/consent.py)."""
    return SECRET_ACCESS_NOT_GRANTED if isinstance(e, ForbiddenError) else type(e).__name__


class TargetResolver:
    def _secret_problem(self, e: KubeError, secret: str, field: str) -> str:
        """A Secret that RBAC refused gets the exact command that grants consent (guardrails), else the error."""
        return secret_problem(
            e,
            forbidden=isinstance(e, ForbiddenError),
            namespace=self.namespace,
            secret=secret,
            field=field,
            target=ConsentTarget.from_env(os.environ),
        )

    def __init__(
        self, namespace: str, secrets: SecretCache, forward: Forwarder, close_forward: ForwardCloser
    ) -> None:
        self.namespace = namespace
        self._secrets = secrets
        self._forward = forward
        self._close_forward = close_forward
        self._ca_files: dict[str, str] = {}

    async def resolve(self, spec: WatchSpec, pod: PodInfo) -> Resolution:
        ep = spec.endpoint
        port = resolve_port(ep, pod)
        if port is None:
            problem = f"pod {pod.name} has no container port named {ep.port!r} (spec.endpoint.port)"
            return Resolution(pod.name, None, problem=problem, cause="NoSuchPort")
        stale: list[tuple[str, KubeError]] = []
        token = None
        if ep.bearer_token_secret is not None:
            ref = ep.bearer_token_secret
            try:
                got = await self._secrets.get(self.namespace, ref.name, ref.key)
            except KubeError as e:
                problem = self._secret_problem(e, ref.name, "spec.endpoint.bearerTokenSecretRef")
                return Resolution(pod.name, None, port, problem, _transient(e), _secret_cause(e))
            token = got.value.strip()
            if got.stale_error:
                stale.append((f"spec.endpoint.bearerTokenSecretRef: {got.stale_error}", got.stale_error))
        tls = None
        if ep.scheme == "https":
            ca_file = None
            if ep.tls is not None and ep.tls.ca_secret is not None:
                ref = ep.tls.ca_secret
                try:
                    ca = await self._secrets.get(self.namespace, ref.name, ref.key)
                except KubeError as e:
                    problem = self._secret_problem(e, ref.name, "spec.endpoint.tls.caSecretRef")
                    return Resolution(pod.name, None, port, problem, _transient(e), _secret_cause(e))
                if ca.stale_error:
                    stale.append((f"spec.endpoint.tls.caSecretRef: {ca.stale_error}", ca.stale_error))
                ca_file = self._ca_file(ref.name, ref.key, ca.value)
            tls = TLSConfig(
                ca_file=ca_file,
                insecure_skip_verify=bool(ep.tls and ep.tls.insecure_skip_verify),
                server_name=ep.tls.server_name if ep.tls else None,
            )
        forwarded = ep.access == "PortForward"
        if forwarded:
            try:
                url = await self._forward(self.namespace, pod.name, port, ep.scheme)
            except KubeError as e:
                problem = f"pod {pod.name}: port-forward through the API server failed: {e}"
                transient = _transient(e) or e.status == 400
                return Resolution(pod.name, None, port, problem, transient, type(e).__name__)
        else:
            if not pod.ip:
                return Resolution(pod.name, None, port)
            url = pod_url(ep, pod.ip, port)
        try:
            target = TargetConfig(
                url=url,
                pprof_path=ep.path,
                bearer_token=token,
                tls=tls,
                metrics_path=ep.metrics_path,
                name=pod.name,
                # The listener is this process's own port-forward bridge: /proc would measure the operator.
                read_proc_rss=not forwarded,
            )
        except ValueError as e:
            return Resolution(pod.name, None, port, f"pod {pod.name}: {e}", cause="InvalidTarget")
        if not stale:
            return Resolution(pod.name, target, port)
        problem = f"pod {pod.name}: using the last credentials read; " + "; ".join(text for text, _ in stale)
        return Resolution(pod.name, target, port, problem, True, type(stale[0][1]).__name__)

    async def release(self, spec: WatchSpec | None, pod: str, port: int | None) -> None:
        """A pod left the watch: close its port-forward listener, if it had one."""
        if spec is not None and port is not None and spec.endpoint.access == "PortForward":
            await self._close_forward(self.namespace, pod, port)

    def _ca_file(self, name: str, key: str, pem: str) -> str:
        """The scraper's SSLContext loads a CA bundle from a file: one file per Secret key under $TMPDIR (an emptyDir), rewritten
        only when its content changed."""
        ident = f"{name}/{key}"
        path = self._ca_files.get(ident)
        if path is not None and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                if f.read() == pem:
                    return path
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix="memorywatch-ca-", suffix=".pem")
            os.close(fd)
            self._ca_files[ident] = path
        with open(path, "w", encoding="utf-8") as f:
            f.write(pem)
        return path

    def cleanup(self) -> None:
        for path in self._ca_files.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._ca_files.clear()
