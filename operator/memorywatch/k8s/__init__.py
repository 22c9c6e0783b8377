"""Everything that talks to the Kubernetes API (the only package importing the `kubernetes` client).

Calls are synchronous in the client library and run in threads (`asyncio.to_thread`), so the event loop that
scrapes targets never blocks on the API server.

Errors: `KubeError` → `NotFoundError` (404), `ForbiddenError` (403: RBAC), `ConflictError` (409),
`TooManyRequests` (429: e.g. an eviction refused by a PodDisruptionBudget), `ApiUnavailable` (connection
refused, timeouts, 5xx: retry later). Messages never contain Secret values.
"""

from memorywatch.k8s.client import (
    ApiUnavailable,
    ConflictError,
    ForbiddenError,
    Kube,
    KubeError,
    NotFoundError,
    ObjectRef,
    TooManyRequests,
    load_api_client,
)

__all__ = [
    "ApiUnavailable",
    "ConflictError",
    "ForbiddenError",
    "Kube",
    "KubeError",
    "NotFoundError",
    "ObjectRef",
    "TooManyRequests",
    "load_api_client",
]
