"""A real HTTP proxy in front of the real kube-apiserver that answers Secret reads with 500 or 429 while told
to, and passes everything else through unchanged (same credentials, same bodies). Clients talk plain HTTP to it
on loopback; it talks HTTPS to the API server and verifies it with the cluster's CA."""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

SECRET_GET = re.compile(r"^/api/v1/namespaces/[^/]+/secrets/[^/]+$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class FaultInjectingApiProxy:
    def __init__(self, upstream: str, upstream_ca: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self._upstream_ssl = ssl.create_default_context(cafile=str(upstream_ca))
        self._failing: tuple[int, float] | None = None
        self.injected: collections.Counter[int] = collections.Counter()
        self.secret_requests = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def fail_secrets(self, status: int, seconds: float) -> None:
        self._failing = (status, time.monotonic() + seconds)

    def _fault(self) -> int | None:
        if self._failing is None or time.monotonic() >= self._failing[1]:
            return None
        return self._failing[0]

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._upstream_ssl))
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        await asyncio.sleep(0.1)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and SECRET_GET.match(request.path):
            self.secret_requests += 1
            status = self._fault()
            if status is not None:
                self.injected[status] += 1
                reason = "TooManyRequests" if status == 429 else "InternalError"
                body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "message": "injected by the test proxy", "reason": reason, "code": status}  # fmt: skip
                headers = {"Retry-After": "1"} if status == 429 else {}
                return web.json_response(body, status=status, headers=headers)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=await request.read()
        ) as r:
            out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=r.status, body=await r.read(), headers=out)


def proxied_api_client(kubeconfig: Path, proxy_url: str) -> Any:
    """An ApiClient with the kubeconfig's credentials that talks to the proxy instead of the API server."""
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    # The kubeconfig loader's refresh hook copies the server and CA back before every request: the token is
    # static here, so drop the hook and point the client at the proxy (plain HTTP on loopback).
    cfg.refresh_api_key_hook = None
    cfg.host = proxy_url
    return client.ApiClient(cfg)
