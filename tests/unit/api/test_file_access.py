"""The capture-files API, pure parts: routes, the front proxy's settings and headers, the access review and its
answer, which file a MemoryCapture lets the operator serve, and the Status bodies of every refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from memorywatch.api import file_access as fa

ROOT = "/var/lib/memorywatch/captures"
PATH = "shop/checkout/checkout-0/20261201T100000Z-heap-growth"
SHA = "a" * 64
BASE = f"/apis/{fa.GROUP}/{fa.VERSION}"


def spec(location: str = f"file://{ROOT}/{PATH}", **extra: Any) -> dict[str, Any]:
    return {
        "storage": {"location": location},
        "files": [
            {"name": "heap.pb.gz", "size": 10, "sha256": SHA},
            {"name": "manifest.json"},
            {"name": "../etc/passwd", "size": 1},
            {"name": "x", "size": 1, "sha256": "not-hex"},
        ],
        **extra,
    }


def test_routes() -> None:
    assert fa.route(BASE, {}) == fa.Discovery()
    assert fa.route(BASE + "/", {}) == fa.Discovery()
    assert fa.route(f"{BASE}/namespaces/shop/memorycaptures/c1", {}) == fa.CaptureFiles("shop", "c1", None)
    assert fa.route(f"{BASE}/namespaces/shop/memorycaptures/c1", {"file": "heap.pb.gz"}) == fa.CaptureFiles(
        "shop", "c1", "heap.pb.gz"
    )
    bad = fa.route(f"{BASE}/namespaces/shop/memorycaptures/c1", {"file": "../../x"})
    assert isinstance(bad, fa.BadRoute) and bad.body["code"] == 400
    for path in (f"{BASE}/namespaces/Shop!/memorycaptures/c1", f"{BASE}/namespaces/shop/memorycaptures/A_B"):
        bad = fa.route(path, {})
        assert isinstance(bad, fa.BadRoute) and bad.body["code"] == 404
    listing = fa.route(f"{BASE}/namespaces/shop/memorycaptures", {})
    assert isinstance(listing, fa.BadRoute) and listing.body["code"] == 405
    assert "kubectl get memorycaptures.memorywatch.io" in listing.body["message"]
    other = fa.route("/apis/other/v1/x", {})
    assert isinstance(other, fa.BadRoute) and other.body["reason"] == "NotFound"


def test_discovery_lists_one_read_only_namespaced_resource() -> None:
    body = fa.discovery_body()
    assert body["groupVersion"] == "files.memorywatch.io/v1alpha1"
    assert body["resources"] == [
        {"name": "memorycaptures", "singularName": "", "namespaced": True, "kind": fa.KIND, "verbs": ["get"]}
    ]


def test_status_bodies_are_kubernetes_statuses() -> None:
    body = fa.forbidden("system:serviceaccount:shop:x", "shop", "c1", "no RBAC rule")
    assert body["kind"] == "Status" and body["code"] == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'memorycaptures.memorywatch.io "c1" is forbidden: User "system:serviceaccount:shop:x" cannot get resource '
        '"memorycaptures" in API group "memorywatch.io" in the namespace "shop": no RBAC rule'
    )
    gone = fa.not_found("shop", "c1", "why")
    assert gone["code"] == 404 and gone["message"].endswith(": why") and '"c1" not found' in gone["message"]
    json.dumps(body), json.dumps(gone)


PROXY_DATA = {
    "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
    "requestheader-allowed-names": '["front-proxy-client"]',
    "requestheader-username-headers": '["X-Remote-User"]',
    "requestheader-group-headers": '["X-Remote-Group"]',
    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
}


def test_front_proxy_settings() -> None:
    proxy = fa.front_proxy(PROXY_DATA)
    assert proxy.allowed_names == ("front-proxy-client",)
    assert fa.proxy_name_allowed(proxy, "front-proxy-client")
    assert not fa.proxy_name_allowed(proxy, "someone-else")
    assert not fa.proxy_name_allowed(proxy, None)
    # An empty allow-list: any certificate the requestheader CA signed (as the API server itself does).
    anyone = fa.front_proxy({**PROXY_DATA, "requestheader-allowed-names": "[]"})
    assert fa.proxy_name_allowed(anyone, "x")
    # Defaults when the lists are absent or garbage.
    bare = fa.front_proxy({"requestheader-client-ca-file": PROXY_DATA["requestheader-client-ca-file"],
                           "requestheader-group-headers": "{not json"})  # fmt: skip
    assert bare.username_headers == ("X-Remote-User",) and bare.group_headers == ("X-Remote-Group",)
    with pytest.raises(fa.FrontProxyError, match="--requestheader-client-ca-file"):
        fa.front_proxy({"client-ca-file": "x"})


def test_the_user_comes_from_the_front_proxy_headers() -> None:
    proxy = fa.front_proxy(PROXY_DATA)
    headers = [
        ("X-Remote-User", "system:serviceaccount:shop:reader"),
        ("x-remote-group", "system:serviceaccounts"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-authentication.kubernetes.io%2Fpod-name", "p1"),
        ("X-Remote-Extra-Scopes", "a"),
        ("X-Remote-Extra-Scopes", "b"),
        ("Authorization", "Bearer secret"),
    ]
    user = fa.requester(proxy, headers)
    assert user == fa.User(
        "system:serviceaccount:shop:reader",
        ("system:serviceaccounts", "system:authenticated"),
        {"authentication.kubernetes.io/pod-name": ("p1",), "scopes": ("a", "b")},
    )
    assert fa.requester(proxy, [("X-Remote-Group", "system:masters")]) is None
    assert fa.requester(proxy, [("X-Remote-User", "")]) is None


def test_the_access_review_asks_about_the_real_memorycapture() -> None:
    user = fa.User("alice", ("dev",), {"scopes": ("a",)})
    review = fa.access_review(user, "shop", "c1")
    assert review["spec"] == {
        "user": "alice",
        "groups": ["dev"],
        "extra": {"scopes": ["a"]},
        "resourceAttributes": {"namespace": "shop", "verb": "get", "group": "memorywatch.io",
                               "resource": "memorycaptures", "name": "c1"},
    }  # fmt: skip
    assert "extra" not in fa.access_review(fa.User("bob", (), {}), "shop", "c1")["spec"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"allowed": True}, (True, "")),
        ({"allowed": True, "denied": True}, (False, "")),
        ({"allowed": False, "reason": "no rule"}, (False, "no rule")),
        ({"evaluationError": "webhook down"}, (False, "webhook down")),
        ({}, (False, "")),
        ({"allowed": "true"}, (False, "")),
    ],
)
def test_review_answers(status: dict[str, Any], expected: tuple[bool, str]) -> None:
    assert fa.review_allows(status) == expected


def test_a_file_is_served_only_from_the_captures_own_folder() -> None:
    place = fa.locate("shop", "c1", spec(), ROOT, "heap.pb.gz")
    assert place == fa.VolumeFile(f"{ROOT}/{PATH}", "heap.pb.gz")
    assert fa.locate("shop", "c1", spec(), ROOT, None) == fa.VolumeFile(f"{ROOT}/{PATH}", "")
    # Not listed in spec.files, or not a plain name there.
    for name in ("report.html", "../etc/passwd"):
        refused = fa.locate("shop", "c1", spec(), ROOT, name)
        assert isinstance(refused, dict) and refused["code"] == 404, name
    # Another namespace's capture, a path outside the volume, a location that is not a capture folder.
    for location in (
        f"file://{ROOT}/other/checkout/checkout-0/20261201T100000Z-heap-growth",
        f"file:///etc/{PATH}",
        f"file://{ROOT}/{PATH}/../../../../../etc",
        "https://example.com/x",
    ):
        refused = fa.locate("shop", "c1", spec(location), ROOT, "heap.pb.gz")
        assert isinstance(refused, dict) and refused["code"] == 404, location
        assert "cannot be served" in refused["message"]


def test_s3_captures_are_listed_with_presigned_urls() -> None:
    s3 = {"bucket": "b", "prefix": "p"}
    place = fa.locate(
        "shop", "c1", spec(f"s3://b/p/{PATH}", storage={"location": f"s3://b/p/{PATH}", "s3": s3}), ROOT, None
    )
    assert isinstance(place, fa.S3Files) and place.plan.path == PATH and place.plan.s3 == s3
    body = fa.files_body("shop", "c1", spec(f"s3://b/p/{PATH}"), {"heap.pb.gz": "https://signed"}, 300)
    assert body["source"] == "presigned" and body["urlsExpireSeconds"] == 300
    assert body["files"] == [
        {"name": "heap.pb.gz", "size": 10, "sha256": SHA, "url": "https://signed"},
        {"name": "manifest.json"},
        {"name": "x", "size": 1},  # a digest that is not one is left out; the bad name is gone
    ]
    volume = fa.files_body("shop", "c1", spec(), {}, 0)
    assert volume["source"] == "apiserver" and "urlsExpireSeconds" not in volume
    assert volume["kind"] == fa.KIND and volume["metadata"] == {"name": "c1", "namespace": "shop"}
