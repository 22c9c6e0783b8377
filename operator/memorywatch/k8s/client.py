"""A small async facade over the `kubernetes` client: Secrets, MemoryWatch status, Events, and raw calls."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import dataclasses
import datetime as dt
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

log = logging.getLogger(__name__)
T = TypeVar("T")

GROUP = "memorywatch.io"
VERSION = "v1alpha1"
PLURAL = "memorywatches"
CAPTURE_PLURAL = "memorycaptures"
COMPONENT = "memorywatch"
EVENT_DEDUP_SECONDS = 600.0
# A watch's MemoryCaptures are read in pages of this size, at most this many pages (the store's quotas keep a
# watch's captures far fewer; past the bound the read says so and judges what it got).
CAPTURE_PAGE_SIZE = 500
CAPTURE_MAX_PAGES = 20


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(KubeError):
    pass


class ForbiddenError(KubeError):
    pass


class ConflictError(KubeError):
    pass


class TooManyRequests(KubeError):
    pass


class ApiUnavailable(KubeError):
    pass


def _translate(what: str, e: Exception) -> KubeError:
    if isinstance(e, ApiException):
        status = e.status
        reason = (e.reason or "").strip()
        detail = ""
        try:
            import json

            detail = str(json.loads(e.body or "{}").get("message", ""))
        except ValueError:
            detail = ""
        msg = f"{what}: {status} {reason}" + (f": {detail}" if detail else "")
        cls: type[KubeError] = {
            404: NotFoundError,
            403: ForbiddenError,
            409: ConflictError,
            429: TooManyRequests,
        }.get(status or 0, ApiUnavailable if (status or 0) >= 500 else KubeError)
        return cls(msg, status)
    return ApiUnavailable(f"{what}: the API server did not answer ({type(e).__name__}: {e})")


# Calls to the API server in flight at once. They run in a pool of their own: on asyncio's default executor
# (6 threads on 2 cores) a slow or restarting API server would also hold up the store's file I/O and capture
# writes, and those would hold up API calls. Each call is bounded by the client's request timeout.
API_THREADS = 16


def load_api_client() -> k8s.ApiClient:
    """In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config (the same as kubectl)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ):
        k8s_config.load_incluster_config()
    else:
        k8s_config.load_kube_config()
    cfg = k8s.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = API_THREADS  # one connection per thread that may call at once
    return k8s.ApiClient(cfg)


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """What an Event is about."""

    kind: str
    name: str
    namespace: str
    uid: str | None = None
    api_version: str = "v1"


class Kube:
    """Async wrappers around the calls MemoryWatch makes. Thread-safe; one per operator process."""

    def __init__(self, api: k8s.ApiClient, *, instance: str = "") -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.instance = instance or os.environ.get("MEMORYWATCH_POD_NAME", "") or os.uname().nodename
        self._events: dict[tuple[str, str, str, str, str], tuple[str, int, float]] = {}
        self._events_lock = threading.Lock()
        self._threads = concurrent.futures.ThreadPoolExecutor(
            API_THREADS, thread_name_prefix="memorywatch-kube"
        )

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one client call in a thread of the API pool and translate its failure into the KubeError tree."""
        loop = asyncio.get_running_loop()
        job = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        try:
            return await loop.run_in_executor(self._threads, job)
        except (ApiException, Urllib3Error, OSError) as e:
            raise _translate(what, e) from None

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret in `namespace` (never another namespace), decoded. Never logged."""
        secret = await self.call(
            f"get Secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace
        )
        data = secret.data or {}
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise NotFoundError(f"Secret {namespace}/{name} has no key {key!r} (it has: {keys})", 404)
        return base64.b64decode(data[key]).decode("utf-8", "replace")

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch a MemoryWatch's status subresource."""
        await self.call(
            f"patch status of MemoryWatch {namespace}/{name}",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
        )

    # --- MemoryCaptures (memorywatch.api.capture_object builds their bodies) ---------------------------

    async def create_capture(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = str((body.get("metadata") or {}).get("name", ""))
        created = await self.call(
            f"create MemoryCapture {namespace}/{name}",
            self.custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            CAPTURE_PLURAL,
            dict(body),
        )
        return dict(created)

    async def patch_capture_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self.call(
            f"patch status of MemoryCapture {namespace}/{name}",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            CAPTURE_PLURAL,
            name,
            {"status": dict(status)},
        )

    async def list_captures(
        self,
        namespace: str,
        label_selector: str,
        *,
        page_size: int = CAPTURE_PAGE_SIZE,
        max_pages: int = CAPTURE_MAX_PAGES,
    ) -> list[dict[str, Any]]:
        """Every MemoryCapture in `namespace` matching `label_selector`, page by page (a continue token that
        expired mid-way is a KubeError like any failed read), at most `max_pages` pages."""
        items: list[dict[str, Any]] = []
        token = ""
        for _ in range(max_pages):
            page: dict[str, Any] = {"label_selector": label_selector, "limit": page_size}
            if token:
                page["_continue"] = token
            answer = await self.call(
                f"list MemoryCaptures in {namespace}",
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                CAPTURE_PLURAL,
                **page,
            )
            items.extend(dict(i) for i in answer.get("items") or [])
            metadata = answer.get("metadata")
            token = str(metadata.get("continue") or "") if isinstance(metadata, dict) else ""
            if not token:
                return items
        log.warning(
            "more than %d MemoryCaptures in %s match %s: only the first %d are read",
            len(items), namespace, label_selector, len(items),
        )  # fmt: skip
        return items

    async def delete_capture(self, namespace: str, name: str) -> None:
        await self.call(
            f"delete MemoryCapture {namespace}/{name}",
            self.custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            CAPTURE_PLURAL,
            name,
        )

    async def annotate(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        """Merge-patch annotations onto a MemoryWatch (not its spec)."""
        await self.call(
            f"annotate MemoryWatch {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": dict(annotations)}},
        )

    async def event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Post an Event, aggregating repeats: the same object, reason and message within ten minutes bumps
        the count of the existing Event instead of creating another (never one event per scrape)."""
        message = message[:1024]
        now = dt.datetime.now(dt.UTC)
        key = (ref.namespace, ref.kind, ref.name, reason, message)
        with self._events_lock:
            known = self._events.get(key)
        try:
            if known is not None and now.timestamp() - known[2] < EVENT_DEDUP_SECONDS:
                name, count, first = known
                await self.call(
                    "update Event",
                    self.core.patch_namespaced_event,
                    name,
                    ref.namespace,
                    {"count": count + 1, "lastTimestamp": now.isoformat()},
                )
                with self._events_lock:
                    self._events[key] = (name, count + 1, first)
                return
            body = k8s.CoreV1Event(
                metadata=k8s.V1ObjectMeta(generate_name=f"{ref.name[:200]}.", namespace=ref.namespace),
                involved_object=k8s.V1ObjectReference(
                    kind=ref.kind,
                    name=ref.name,
                    namespace=ref.namespace,
                    uid=ref.uid,
                    api_version=ref.api_version,
                ),
                type=type_,
                reason=reason,
                message=message,
                count=1,
                first_timestamp=now,
                last_timestamp=now,
                source=k8s.V1EventSource(component=COMPONENT),
                reporting_component=COMPONENT,
                reporting_instance=self.instance[:128],
            )
            created = await self.call("create Event", self.core.create_namespaced_event, ref.namespace, body)
            with self._events_lock:
                self._events[key] = (created.metadata.name, 1, now.timestamp())
                if len(self._events) > 4096:  # bounded: forget the oldest half
                    for k in sorted(self._events, key=lambda k: self._events[k][2])[:2048]:
                        del self._events[k]
        except KubeError as e:
            # An event that cannot be posted must not stop the watch; status still carries the facts.
            log.warning(
                "could not post event %s on %s %s/%s: %s", reason, ref.kind, ref.namespace, ref.name, e
            )
