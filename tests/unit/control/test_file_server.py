"""The capture-files server over real TLS on 127.0.0.1 (aiohttp, certificates made here), with a fake API server
behind it (`FakeKube`: the MemoryCaptures, and a reviewer that allows one user): only the front proxy's client
certificate gets an answer, the user comes from its headers, the access review decides, and a file is streamed only
from the capture's own folder, within the server's budgets. tests/e2e/test_capture_files.py runs the same server
behind a real kube-apiserver."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from memorywatch.api import file_access as fa
from memorywatch.control.file_server import FileServer, FileServerLimits, FrontProxyRefresher, tls_context
from memorywatch.k8s import ApiUnavailable, NotFoundError
from support.tls import Pair, issue, write_pem

PATH = "shop/checkout/checkout-0/20261201T100000Z-heap-growth"
BASE = "/apis/files.memorywatch.io/v1alpha1/namespaces/shop/memorycaptures"


def _cert(cn: str, issuer: Pair | None, *, ca: bool = False, san: bool = False) -> Pair:
    return issue(cn, issuer, ca=ca, dns_names=("localhost",) if san else ())


class FakeKube:
    """A fake API server: MemoryCaptures by (namespace, name), read through `call` like the real facade."""

    def __init__(self, captures: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.captures = captures
        self.custom = self

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> Any:
        assert (group, version, plural) == ("memorywatch.io", "v1alpha1", "memorycaptures")
        if (ns, name) not in self.captures:
            raise NotFoundError(f"{name} not found", 404)
        return self.captures[(ns, name)]

    async def call(self, what: str, fn: Any, *args: Any) -> Any:
        return fn(*args)


@pytest.fixture
async def served(tmp_path: pathlib.Path) -> AsyncIterator[dict[str, Any]]:
    from aiohttp import web

    proxy_ca = _cert("front-proxy-ca", None, ca=True)
    rogue_ca = _cert("rogue-ca", None, ca=True)
    server_ca = _cert("server-ca", None, ca=True)
    certs = {
        "proxy": write_pem(tmp_path, "proxy", _cert("front-proxy-client", proxy_ca)),
        "other-name": write_pem(tmp_path, "other", _cert("someone-else", proxy_ca)),
        "rogue": write_pem(tmp_path, "rogue", _cert("front-proxy-client", rogue_ca)),
    }
    srv_crt, srv_key = write_pem(tmp_path, "server", _cert("localhost", server_ca, san=True))
    ca_file, _ = write_pem(tmp_path, "server-ca", server_ca)
    proxy = fa.front_proxy({
        "requestheader-client-ca-file": proxy_ca[1].public_bytes(serialization.Encoding.PEM).decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
    })  # fmt: skip
    root = tmp_path / "volume"
    folder = root / PATH
    folder.mkdir(parents=True)
    heap = b"\x1f\x8b" + bytes(range(256)) * 1000
    (folder / "heap.pb.gz").write_bytes(heap)
    (folder / "big.bin").write_bytes(b"x" * 5000)
    (tmp_path / "secret.txt").write_text("not a capture file")
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    files = [{"name": n, "size": 1} for n in ("heap.pb.gz", "big.bin", "link.txt", "gone.txt")]
    spec = {"storage": {"location": f"file://{root}/{PATH}"}, "files": files}
    other = {"storage": {"location": f"file://{root}/other/w/p/20261201T100000Z-x"}, "files": files}
    kube = FakeKube({("shop", "c1"): {"spec": spec}, ("shop", "foreign"): {"spec": other}})
    reviews: list[dict[str, Any]] = []

    async def reviewer(body: dict[str, Any]) -> dict[str, Any]:
        reviews.append(body)
        if body["spec"]["user"] == "crash-the-reviewer-mock":  # a bug stand-in: no real input makes it raise
            raise RuntimeError("boom")
        return {"allowed": body["spec"]["user"] == "alice", "reason": "RBAC: no rule"}

    server = FileServer(kube, proxy, volume_root=str(root), make_store=None,  # type: ignore[arg-type]
                        limits=FileServerLimits(concurrent_downloads=1, max_file_bytes=4096),
                        namespaces=None, reviewer=reviewer)  # fmt: skip
    runner = web.AppRunner(server.app())
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    ctx = tls_context(srv_crt, srv_key, proxy)
    site = web.SockSite(runner, sock, ssl_context=ctx)
    await site.start()
    url = f"https://localhost:{sock.getsockname()[1]}"
    yield {"url": url, "certs": certs, "ca": ca_file, "heap": heap, "reviews": reviews, "server": server,
           "ctx": ctx, "tmp": tmp_path}  # fmt: skip
    await runner.cleanup()


async def _get(s: dict[str, Any], path: str, *, cert: str = "proxy", user: str | None = "alice",
               params: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    headers = {"X-Remote-User": user, "X-Remote-Group": "system:authenticated"} if user else {}
    async with httpx.AsyncClient(verify=_client_tls(s, cert)) as c:
        return await c.get(s["url"] + path, headers=headers, params=params)


def _client_tls(s: dict[str, Any], cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=s["ca"])
    if cert:
        ctx.load_cert_chain(*s["certs"][cert])
    return ctx


async def test_only_the_front_proxy_is_answered(served: dict[str, Any]) -> None:
    ok = await _get(served, "/apis/files.memorywatch.io/v1alpha1", user=None)
    assert ok.status_code == 200 and ok.json()["resources"][0]["name"] == "memorycaptures"
    with pytest.raises(httpx.HTTPError):  # a certificate of another CA: no TLS session at all
        await _get(served, "/apis/files.memorywatch.io/v1alpha1", cert="rogue")
    with pytest.raises(httpx.HTTPError):  # no client certificate
        async with httpx.AsyncClient(verify=_client_tls(served, None)) as c:
            await c.get(served["url"] + "/apis/files.memorywatch.io/v1alpha1")
    named = await _get(served, f"{BASE}/c1", cert="other-name")
    assert named.status_code == 401 and "front proxy" in named.json()["message"]
    nobody = await _get(served, f"{BASE}/c1", user=None)
    assert nobody.status_code == 401 and nobody.json()["kind"] == "Status"


async def test_the_access_review_decides(served: dict[str, Any]) -> None:
    denied = await _get(served, f"{BASE}/c1", user="mallory", params={"file": "heap.pb.gz"})
    assert denied.status_code == 403 and denied.headers["content-type"].startswith("application/json")
    assert denied.json()["message"] == (
        'memorycaptures.memorywatch.io "c1" is forbidden: User "mallory" cannot get resource "memorycaptures" in '
        'API group "memorywatch.io" in the namespace "shop": RBAC: no rule'
    )
    attrs = served["reviews"][-1]["spec"]
    assert attrs["resourceAttributes"] == {"namespace": "shop", "verb": "get", "group": "memorywatch.io",
                                           "resource": "memorycaptures", "name": "c1"}  # fmt: skip
    assert attrs["groups"] == ["system:authenticated"]
    listing = await _get(served, f"{BASE}/c1")
    assert listing.status_code == 200 and [f["name"] for f in listing.json()["files"]][:2] == [
        "heap.pb.gz",
        "big.bin",
    ]
    missing = await _get(served, f"{BASE}/nope")
    assert missing.status_code == 404 and '"nope" not found' in missing.json()["message"]


async def test_files_come_only_from_the_captures_folder_within_budgets(served: dict[str, Any]) -> None:
    heap = await _get(served, f"{BASE}/c1", params={"file": "heap.pb.gz"})
    assert heap.status_code == 413 and "4096" in heap.json()["message"]  # over the per-file bound
    served["server"].limits = FileServerLimits(concurrent_downloads=1, max_file_bytes=1 << 20)
    heap = await _get(served, f"{BASE}/c1", params={"file": "heap.pb.gz"})
    assert (
        heap.status_code == 200
        and hashlib.sha256(heap.content).digest() == hashlib.sha256(served["heap"]).digest()
    )
    for name, code in (("link.txt", 404), ("gone.txt", 404), ("report.html", 404), ("../secret.txt", 400)):
        r = await _get(served, f"{BASE}/c1", params={"file": name})
        assert r.status_code == code and r.json()["kind"] == "Status", name
        assert b"not a capture file" not in r.content
    foreign = await _get(served, f"{BASE}/foreign", params={"file": "heap.pb.gz"})
    assert foreign.status_code == 404 and "not in namespace shop" in foreign.json()["message"]
    # Over the concurrency bound: 429 at once, with Retry-After.
    async with served["server"]._downloads:
        busy = await _get(served, f"{BASE}/c1", params={"file": "big.bin"})
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
    for method in ("POST", "DELETE"):
        async with httpx.AsyncClient(verify=_client_tls(served, "proxy")) as c:
            r = await c.request(method, served["url"] + f"{BASE}/c1", headers={"X-Remote-User": "alice"})
        assert r.status_code == 405, method
    await asyncio.sleep(0)


async def test_a_bug_costs_one_request_not_the_server(served: dict[str, Any]) -> None:
    crashed = await _get(served, f"{BASE}/c1", user="crash-the-reviewer-mock")
    assert crashed.status_code == 500 and crashed.json()["reason"] == "InternalError"
    assert (await _get(served, f"{BASE}/c1")).status_code == 200


async def test_a_rotated_front_proxy_ca_is_followed_without_a_restart(served: dict[str, Any]) -> None:
    new_ca = _cert("front-proxy-ca-2", None, ca=True)
    served["certs"]["rotated"] = write_pem(served["tmp"], "rotated", _cert("front-proxy-client-2", new_ca))
    with pytest.raises(httpx.HTTPError):  # not trusted yet
        await _get(served, f"{BASE}/c1", cert="rotated")
    settings: list[Any] = [ApiUnavailable("read ConfigMap: 503 Service Unavailable", 503)]

    async def load() -> fa.FrontProxy:
        if isinstance(settings[0], Exception):
            raise settings[0]
        return settings[0]  # type: ignore[no-any-return]

    refresher = FrontProxyRefresher(load, served["ctx"], served["server"])
    assert not await refresher.refresh_once(), "a failed read keeps the last settings"
    assert (await _get(served, f"{BASE}/c1")).status_code == 200
    settings[0] = fa.front_proxy({
        "requestheader-client-ca-file": new_ca[1].public_bytes(serialization.Encoding.PEM).decode(),
        "requestheader-allowed-names": '["front-proxy-client-2"]',
    })  # fmt: skip
    assert await refresher.refresh_once()
    assert (await _get(served, f"{BASE}/c1", cert="rotated")).status_code == 200, "the new CA and name"
    old = await _get(
        served, f"{BASE}/c1"
    )  # the old CA's session still opens, but its name is no longer allowed
    assert old.status_code == 401 and "front proxy" in old.json()["message"]
    assert not await refresher.refresh_once(), "unchanged settings change nothing"
