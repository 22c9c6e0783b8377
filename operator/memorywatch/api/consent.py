"""Secret access by consent: the operator reads a namespace's Secrets only where the namespace granted it.

The chart grants no `secrets` access of its own. It ships a ClusterRole (`<release>-memorywatch-secret-reader`,
`get` on secrets) that a namespace binds with a RoleBinding to the operator's ServiceAccount, or the namespace
grants `get` on the named Secrets only with a Role of its own. When a MemoryWatch names a Secret the operator may
not read, its condition says so with the exact command that grants it (`secret_problem`). Pure: no I/O; the
operator passes its identity (`ConsentTarget.from_env`).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping

#: The reason of the condition a watch gets when the operator may not read a Secret it names.
REASON = "SecretAccessNotGranted"
#: The RoleBinding / Role name the suggested commands create in the watch's namespace.
GRANT_NAME = "memorywatch-secret-reader"


@dataclasses.dataclass(frozen=True)
class ConsentTarget:
    """Who must be granted access: the operator's ServiceAccount, and the ClusterRole the chart ships."""

    namespace: str
    service_account: str
    cluster_role: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsentTarget:
        """From the environment the chart sets (MEMORYWATCH_POD_NAMESPACE, MEMORYWATCH_SERVICE_ACCOUNT,
        MEMORYWATCH_SECRET_READER_ROLE); the chart's default names when unset."""
        return cls(
            namespace=env.get("MEMORYWATCH_POD_NAMESPACE") or "memorywatch-system",
            service_account=env.get("MEMORYWATCH_SERVICE_ACCOUNT") or "memorywatch",
            cluster_role=env.get("MEMORYWATCH_SECRET_READER_ROLE") or "memorywatch-secret-reader",
        )

    @property
    def subject(self) -> str:
        return f"{self.namespace}:{self.service_account}"


def grant_commands(namespace: str, secrets: tuple[str, ...], target: ConsentTarget) -> tuple[str, str]:
    """(the command that grants every Secret of the namespace, the commands that grant only the named ones)."""
    ns = shlex.quote(namespace)
    whole = (
        f"kubectl -n {ns} create rolebinding {GRANT_NAME} --clusterrole={shlex.quote(target.cluster_role)} "
        f"--serviceaccount={shlex.quote(target.subject)}"
    )
    names = " ".join(f"--resource-name={shlex.quote(s)}" for s in secrets)
    named = (
        f"kubectl -n {ns} create role {GRANT_NAME} --verb=get --resource=secrets {names} && "
        f"kubectl -n {ns} create rolebinding {GRANT_NAME} --role={GRANT_NAME} "
        f"--serviceaccount={shlex.quote(target.subject)}"
    )
    return whole, named


def consent_message(namespace: str, secret: str, field: str, target: ConsentTarget) -> str:
    """The condition message for a Secret the operator may not read: what, why, and the exact command."""
    whole, named = grant_commands(namespace, (secret,), target)
    return (
        f"{field}: the operator may not read Secret {namespace}/{secret}: namespace {namespace} has not granted "
        f"MemoryWatch access to its Secrets. Grant it with: {named} (only this Secret), or: {whole} (every Secret "
        "of the namespace)"
    )


def secret_problem(
    error: Exception, *, forbidden: bool, namespace: str, secret: str, field: str, target: ConsentTarget
) -> str:
    """What a watch's condition says when reading a Secret it names failed: the consent message when RBAC refused
    (`forbidden`), else the field and the error (a missing Secret or key)."""
    if forbidden:
        return consent_message(namespace, secret, field, target)
    return f"{field}: {error}"
