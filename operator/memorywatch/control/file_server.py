"""The capture-files API (`files.memorywatch.io/v1alpha1`, an aggregated API behind the kube-apiserver): who may
read a MemoryCapture gets its files through the API server, from the operator's volume, or as presigned S3 URLs.

The decisions are pure (api/file_access.py); this module does the I/O: TLS that accepts only the API server's
front-proxy client certificate, a SubjectAccessReview per request, reading the MemoryCapture, streaming a file
from the volume, presigning S3 GETs. Budgets: `FileServerLimits` (concurrent downloads, bytes per file, seconds
per request); a download over the concurrency bound is answered 429 at once, never queued."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import ssl
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from memorywatch.api import file_access as fa
from memorywatch.api.capture_object import GROUP as CAPTURE_GROUP
from memorywatch.api.capture_object import PLURAL, VERSION, store_spec
from memorywatch.api.spec import SpecError, parse_spec
from memorywatch.control.capture_records import store_roots
from memorywatch.control.stores import StoreFactory
from memorywatch.k8s import Kube, KubeError, NotFoundError
from memorywatch.store import FallbackStore, StoreError

if TYPE_CHECKING:  # aiohttp comes with the `operator` extra
    from aiohttp import web

log = logging.getLogger(__name__)
CHUNK_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class FileServerLimits:
    concurrent_downloads: int = 8
    max_file_bytes: int = 1 << 30
    request_seconds: float = 600.0
    review_seconds: float = 10.0
    presign_seconds: int = fa.PRESIGN_SECONDS


async def load_front_proxy(kube: Kube) -> fa.FrontProxy:
    """The API server's aggregation settings (needs the extension-apiserver-authentication-reader Role)."""
    cm = await kube.call(
        "read ConfigMap kube-system/extension-apiserver-authentication",
        kube.core.read_namespaced_config_map,
        "extension-apiserver-authentication",
        "kube-system",
    )
    return fa.front_proxy(dict(cm.data or {}))


def tls_context(cert_file: str, key_file: str, proxy: fa.FrontProxy) -> ssl.SSLContext:
    """Serve with our certificate; require a client certificate that the requestheader CA signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no default CAs: only the requestheader CA is trusted
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=proxy.client_ca_pem)
    return ctx


def _peer_common_name(request: web.Request) -> str | None:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


Reviewer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def kube_reviewer(kube: Kube) -> Reviewer:
    """Ask the API server: a SubjectAccessReview's status (needs system:auth-delegator)."""

    async def review(body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes import client as k8s

        api = k8s.AuthorizationV1Api(kube.api)
        result = await kube.call("create SubjectAccessReview", api.create_subject_access_review, body)
        return dict(kube.api.sanitize_for_serialization(result).get("status") or {})

    return review


class FileServer:
    def __init__(
        self,
        kube: Kube,
        proxy: fa.FrontProxy,
        *,
        volume_root: str,
        make_store: StoreFactory,
        limits: FileServerLimits,
        namespaces: frozenset[str] | None,
        reviewer: Reviewer | None = None,
    ) -> None:
        self.kube, self.proxy, self.volume_root = kube, proxy, volume_root.rstrip("/")
        self.reviewer = reviewer or kube_reviewer(kube)
        self.make_store, self.limits, self.namespaces = make_store, limits, namespaces
        self._downloads = asyncio.Semaphore(limits.concurrent_downloads)

    def app(self) -> web.Application:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            async with asyncio.timeout(self.limits.request_seconds):
                return await self._handle(request)
        except TimeoutError:
            return _json(
                fa.status(504, "Timeout", f"the request took over {self.limits.request_seconds:.0f}s")
            )
        except (KubeError, StoreError) as e:
            log.warning("capture files: %s %s: %s", request.method, request.path[:200], e)
            return _json(fa.status(503, "ServiceUnavailable", f"cannot serve the capture's files now: {e}"))
        except Exception:  # a bug must cost one request, never the operator: logged, answered as a Status
            log.exception("capture files: %s %s failed", request.method, request.path[:200])
            return _json(
                fa.status(500, "InternalError", "the capture-files API failed; see the operator's log")
            )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not fa.proxy_name_allowed(self.proxy, _peer_common_name(request)):
            return _json(
                fa.status(401, "Unauthorized", "only the API server's front proxy may call this server")
            )
        if request.method != "GET":
            return _json(
                fa.status(405, "MethodNotAllowed", f"{request.method} is not supported: read-only API")
            )
        where = fa.route(request.path, dict(request.query))
        if isinstance(where, fa.Discovery):
            return _json(fa.discovery_body(), 200)
        if isinstance(where, fa.BadRoute):
            return _json(where.body)
        user = fa.requester(self.proxy, list(request.headers.items()))
        if user is None:
            return _json(fa.status(401, "Unauthorized", "the front proxy named no user"))
        allowed, why = await self._review(user, where.namespace, where.name)
        if not allowed:
            return _json(fa.forbidden(user.name, where.namespace, where.name, why))
        if self.namespaces is not None and where.namespace not in self.namespaces:
            return _json(
                fa.not_found(where.namespace, where.name, "this operator does not serve that namespace")
            )
        try:
            body = await self.kube.call(
                f"get MemoryCapture {where.namespace}/{where.name}",
                self.kube.custom.get_namespaced_custom_object,
                CAPTURE_GROUP,
                VERSION,
                where.namespace,
                PLURAL,
                where.name,
            )
        except NotFoundError:
            return _json(fa.not_found(where.namespace, where.name))
        spec = body.get("spec") if isinstance(body, dict) and isinstance(body.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        place = fa.locate(where.namespace, where.name, spec, self.volume_root, where.file)
        if isinstance(place, dict):
            return _json(place)
        if isinstance(place, fa.S3Files):
            if where.file is not None:
                return _json(
                    fa.status(400, "BadRequest", "an S3 capture's files come from their presigned URLs")
                )
            urls = await self._presign(where.namespace, place, [f["name"] for f in fa.listed_files(spec)])
            if isinstance(urls, fa.BadRoute):
                return _json(urls.body)
            body_out = fa.files_body(where.namespace, where.name, spec, urls, self.limits.presign_seconds)
            return _json(body_out, 200)
        if where.file is None:
            return _json(fa.files_body(where.namespace, where.name, spec, {}, 0), 200)
        return await self._stream(request, where, place)

    async def _review(self, user: fa.User, namespace: str, name: str) -> tuple[bool, str]:
        async with asyncio.timeout(self.limits.review_seconds):
            status = await self.reviewer(fa.access_review(user, namespace, name))
        return fa.review_allows(status)

    async def _presign(
        self, namespace: str, place: fa.S3Files, names: list[str]
    ) -> dict[str, str] | fa.BadRoute:
        plan = place.plan
        try:
            store = await self.make_store(parse_spec(store_spec(plan.s3)), namespace)
        except SpecError as e:
            why = f"its recorded S3 settings are not valid: {'; '.join(e.messages)}"
            return fa.BadRoute(fa.status(404, "NotFound", why))
        if plan.location not in {f"{r.rstrip('/')}/{plan.path}" for r in store_roots(store)}:
            why = f"{plan.location[:300]} is in no store the operator reaches now"
            return fa.BadRoute(fa.status(404, "NotFound", why))
        from memorywatch.store.s3 import S3Store

        s3 = store.primary if isinstance(store, FallbackStore) else store
        if not isinstance(s3, S3Store):
            return fa.BadRoute(fa.status(404, "NotFound", f"the store {store.location} cannot presign URLs"))
        return await asyncio.to_thread(s3.presign_get, plan.path, names, self.limits.presign_seconds)

    async def _stream(
        self, request: web.Request, where: fa.CaptureFiles, place: fa.VolumeFile
    ) -> web.StreamResponse:
        from aiohttp import web

        if self._downloads.locked():
            resp = _json(fa.status(429, "TooManyRequests", f"over {self.limits.concurrent_downloads} "
                                   "downloads at once; retry in a second"))  # fmt: skip
            resp.headers["Retry-After"] = "1"
            return resp
        async with self._downloads:
            try:
                fd = await asyncio.to_thread(_open_capture_file, self.volume_root, place)
            except FileNotFoundError:
                return _json(fa.not_found(where.namespace, where.name, f"{place.name} is not in the store"))
            except OSError as e:
                return _json(fa.not_found(where.namespace, where.name, f"{place.name} cannot be read: {e}"))
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > self.limits.max_file_bytes:
                    return _json(fa.status(413, "RequestEntityTooLarge", f"{place.name} is {size} bytes, over "
                                           f"the file server's bound of {self.limits.max_file_bytes}"))  # fmt: skip
                stream = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
                stream.content_length = size
                await stream.prepare(request)
                async for chunk in _chunks(f, size):
                    await stream.write(chunk)
                await stream.write_eof()
                return stream


def _open_capture_file(volume_root: str, place: fa.VolumeFile) -> int:
    """A read-only descriptor of a regular file right in the capture's folder, the folder itself under the volume
    (no symbolic link anywhere: the real path must be the expected one)."""
    root = os.path.realpath(volume_root)
    folder = os.path.realpath(place.folder)
    if folder != os.path.normpath(place.folder) or not folder.startswith(root + os.sep):
        raise FileNotFoundError(place.folder)
    fd = os.open(os.path.join(folder, place.name), os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(place.name)
    return fd


async def _chunks(f: Any, size: int) -> AsyncIterator[bytes]:
    left = size
    while left > 0:
        chunk = await asyncio.to_thread(f.read, min(CHUNK_BYTES, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _json(body: dict[str, Any], code: int | None = None) -> web.Response:
    from aiohttp import web

    return web.Response(
        text=json.dumps(body), status=code or int(body.get("code", 200)), content_type="application/json"
    )


class FrontProxyRefresher:
    """Keeps a serving FileServer on the API server's current front-proxy settings: a rotated requestheader CA
    is added to the TLS context's trust (the old one stays trusted until the operator restarts: OpenSSL cannot
    drop a CA from a live context), and changed allowed names or headers apply to the next request."""

    def __init__(
        self, load: Callable[[], Awaitable[fa.FrontProxy]], ctx: ssl.SSLContext, server: FileServer
    ) -> None:
        self.load, self.ctx, self.server = load, ctx, server

    async def refresh_once(self) -> bool:
        """Re-read the settings; True when they changed. A failed read keeps the last settings, and says why."""
        try:
            proxy = await self.load()
        except (KubeError, fa.FrontProxyError) as e:
            log.warning("cannot re-read the API server's front-proxy settings (the last ones stay): %s", e)
            return False
        if proxy == self.server.proxy:
            return False
        if proxy.client_ca_pem != self.server.proxy.client_ca_pem:
            try:
                self.ctx.load_verify_locations(cadata=proxy.client_ca_pem)
            except ssl.SSLError as e:
                log.warning(
                    "the API server's new front-proxy CA cannot be loaded (the last one stays): %s", e
                )
                return False
        self.server.proxy = proxy
        log.info("the API server's front-proxy settings changed; the capture-files API follows them")
        return True


async def serve_files(
    args: Any,
    kube: Kube,
    volume_root: Any,
    make_store: StoreFactory,
    runners: list[web.AppRunner],
    *,
    retry_seconds: float = 60.0,
    refresh_seconds: float = 300.0,
) -> None:
    """Serve the capture-files API on `--files-port` with the chart's certificate until cancelled. Until the API
    server's front-proxy settings can be read and the certificate loaded, retry every `retry_seconds`, saying why
    (the operator runs on meanwhile: an API server restarting during our start must not leave the API unserved
    until the next restart); then re-read the settings every `refresh_seconds`. The runner goes into `runners`
    for the caller to clean up."""
    from aiohttp import web

    while True:
        try:
            proxy = await load_front_proxy(kube)
            ctx = tls_context(args.files_tls_cert, args.files_tls_key, proxy)
            break
        except (KubeError, fa.FrontProxyError, OSError, ssl.SSLError) as e:
            log.error("the capture-files API is not served yet (retrying every %.0f s): %s", retry_seconds, e)
        await asyncio.sleep(retry_seconds)
    server = FileServer(
        kube,
        proxy,
        volume_root=str(volume_root),
        make_store=make_store,
        limits=FileServerLimits(),
        namespaces=None if args.all_namespaces else frozenset(args.namespace),
    )
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    runners.append(runner)
    try:
        await web.TCPSite(runner, args.bind_address, args.files_port, ssl_context=ctx).start()
    except OSError as e:
        log.error("the capture-files API is not served: cannot listen on port %d: %s", args.files_port, e)
        return
    log.info(
        "serving capture files (%s/%s) on %s:%d", fa.GROUP, fa.VERSION, args.bind_address, args.files_port
    )
    refresher = FrontProxyRefresher(lambda: load_front_proxy(kube), ctx, server)
    while True:
        await asyncio.sleep(refresh_seconds)
        await refresher.refresh_once()
