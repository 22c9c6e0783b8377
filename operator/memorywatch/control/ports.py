"""What the controller needs from the Kubernetes API, as protocols: `memorywatch.k8s.Kube` implements them, and
tests pass fakes. Errors are the `memorywatch.k8s.KubeError` tree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from memorywatch.k8s import ObjectRef


class SecretReader(Protocol):
    async def secret_value(self, namespace: str, name: str, key: str) -> str: ...


class StatusWriter(Protocol):
    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...


class EventSink(Protocol):
    async def event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None: ...


class CaptureApi(Protocol):
    """MemoryCaptures (memorywatch.api.capture_object)."""

    async def create_capture(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch_capture_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    async def list_captures(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    async def delete_capture(self, namespace: str, name: str) -> None: ...


class KubeApi(SecretReader, StatusWriter, EventSink, CaptureApi, Protocol):
    """Everything the controller calls on the API server."""


#: Opens (or reuses) a port-forward and answers the local URL: (namespace, pod, port, scheme) -> URL.
Forwarder = Callable[[str, str, int, str], Awaitable[str]]
#: Closes the port-forward listener of (namespace, pod, port), if any.
ForwardCloser = Callable[[str, str, int], Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
