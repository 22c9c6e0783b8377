"""The capture-files API (`files.memorywatch.io/v1alpha1`), pure: routes, who is asking, whether they may, which
file on the operator's volume a request may read, and the Kubernetes Status bodies of every refusal. No I/O, so
all of it is unit-tested; control/file_server.py does the serving.

The operator serves it as an aggregated API behind the kube-apiserver (like metrics-server): a user's request goes
to the API server with whatever credentials kubectl uses, the API server authenticates it, checks RBAC for `get`
on `memorycaptures.files.memorywatch.io`, and proxies it to the operator with its front-proxy client certificate
and the user in `X-Remote-User`/`X-Remote-Group`/`X-Remote-Extra-*`. The operator trusts those headers only on a
connection whose client certificate the requestheader CA signed (and whose name is allowed), then asks the API
server (SubjectAccessReview) whether that user may `get` the real MemoryCapture (`memorycaptures.memorywatch.io`)
of that name in that namespace. So the MemoryCapture's own RBAC is the gate, and nobody needs a network path to the
operator or any access to its namespace.

Everything in a MemoryCapture is hostile input: a file is served only when it is listed in `spec.files`, is a plain
name, and lies in that capture's own folder on the operator's volume, a capture path of the MemoryCapture's own
namespace (`capture_object.plan_deletion`'s rule)."""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from memorywatch.api.capture_object import GROUP as CAPTURE_GROUP
from memorywatch.api.capture_object import PLURAL, DeleteFiles, KeepFiles, plan_deletion

GROUP = "files.memorywatch.io"
VERSION = "v1alpha1"
KIND = "MemoryCaptureFiles"
#: How long a presigned S3 URL is valid: long enough to download a capture, short enough to be useless later.
PRESIGN_SECONDS = 300
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")


# ------------------------------------------------------------------------------------------------ Status bodies


def status(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A `metav1.Status` failure, the body kubectl and client libraries read an error from."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def not_found(namespace: str, name: str, what: str = "") -> dict[str, Any]:
    message = f'{PLURAL}.{CAPTURE_GROUP} "{name}" not found in namespace "{namespace}"'
    return status(
        404,
        "NotFound",
        message + (f": {what}" if what else ""),
        {"name": name, "group": GROUP, "kind": PLURAL},
    )


def forbidden(user: str, namespace: str, name: str, why: str = "") -> dict[str, Any]:
    """The same words the API server uses, naming the verb, resource, group and namespace to grant."""
    message = (
        f'{PLURAL}.{CAPTURE_GROUP} "{name}" is forbidden: User "{user}" cannot get resource "{PLURAL}" in API '
        f'group "{CAPTURE_GROUP}" in the namespace "{namespace}"'
    )
    if why:
        message += f": {why}"
    return status(403, "Forbidden", message, {"name": name, "group": CAPTURE_GROUP, "kind": PLURAL})


# ------------------------------------------------------------------------------------------------ routes


@dataclasses.dataclass(frozen=True)
class Discovery:
    """`/apis/files.memorywatch.io/v1alpha1`: the resource list the API server's discovery reads."""


@dataclasses.dataclass(frozen=True)
class CaptureFiles:
    """`.../namespaces/NS/memorycaptures/NAME`, with `?file=NAME` for one file's bytes."""

    namespace: str
    name: str
    file: str | None


@dataclasses.dataclass(frozen=True)
class BadRoute:
    body: dict[str, Any]


def route(path: str, query: Mapping[str, str]) -> Discovery | CaptureFiles | BadRoute:
    base = f"/apis/{GROUP}/{VERSION}"
    if path.rstrip("/") == base:
        return Discovery()
    parts = path[len(base) :].strip("/").split("/") if path.startswith(base + "/") else []
    if len(parts) == 4 and parts[0] == "namespaces" and parts[2] == PLURAL:
        namespace, name = parts[1], parts[3]
        if not (_NAME.match(namespace) and _NAME.match(name)):
            return BadRoute(not_found(namespace[:253], name[:253]))
        file = query.get("file")
        if file is not None and not _FILE.match(file):
            return BadRoute(status(400, "BadRequest", f"file {file[:100]!r} is not a file name of a capture"))
        return CaptureFiles(namespace, name, file)
    if len(parts) in (1, 3) and parts[-1] == PLURAL:
        return BadRoute(
            status(
                405,
                "MethodNotAllowed",
                f"{PLURAL}.{GROUP} can only be read one at a time (get); list MemoryCaptures with "
                f"`kubectl get {PLURAL}.{CAPTURE_GROUP}`",
            )
        )
    return BadRoute(
        status(404, "NotFound", f"the server could not find the requested resource ({path[:200]})")
    )


def discovery_body() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{GROUP}/{VERSION}",
        "resources": [
            {"name": PLURAL, "singularName": "", "namespaced": True, "kind": KIND, "verbs": ["get"]}
        ],
    }


# ------------------------------------------------------------------------------------------------ who asks


@dataclasses.dataclass(frozen=True)
class FrontProxy:
    """What ConfigMap kube-system/extension-apiserver-authentication says about the API server's front proxy."""

    client_ca_pem: str
    allowed_names: tuple[str, ...]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_prefixes: tuple[str, ...]


class FrontProxyError(ValueError):
    """The API server publishes no aggregation-layer settings; the message says which flag is missing."""


def front_proxy(data: Mapping[str, str]) -> FrontProxy:
    ca = data.get("requestheader-client-ca-file", "")
    if "BEGIN CERTIFICATE" not in ca:
        raise FrontProxyError(
            "ConfigMap kube-system/extension-apiserver-authentication has no requestheader-client-ca-file: the "
            "kube-apiserver runs without the aggregation layer (--requestheader-client-ca-file and "
            "--proxy-client-cert-file); the capture-files API cannot authenticate its requests"
        )

    def names(key: str, default: Sequence[str]) -> tuple[str, ...]:
        try:
            value = json.loads(data.get(key) or "null")
        except ValueError:
            value = None
        return tuple(str(v) for v in value) if isinstance(value, list) and value else tuple(default)

    return FrontProxy(
        ca,
        names("requestheader-allowed-names", ()),
        names("requestheader-username-headers", ("X-Remote-User",)),
        names("requestheader-group-headers", ("X-Remote-Group",)),
        names("requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
    )


def proxy_name_allowed(config: FrontProxy, common_name: str | None) -> bool:
    """An empty allow-list accepts any certificate the requestheader CA signed (the API server's own rule)."""
    return not config.allowed_names or common_name in config.allowed_names


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    extra: Mapping[str, tuple[str, ...]]


def requester(config: FrontProxy, headers: Sequence[tuple[str, str]]) -> User | None:
    """The user the front proxy names, from its headers (repeated headers give several groups); None without one."""
    lower = [(k.lower(), v) for k, v in headers]
    name = next((v for h in config.username_headers for k, v in lower if k == h.lower() and v), None)
    if name is None:
        return None
    groups = tuple(v for h in config.group_headers for k, v in lower if k == h.lower())
    extra: dict[str, list[str]] = {}
    for prefix in (p.lower() for p in config.extra_prefixes):
        for k, v in lower:
            if k.startswith(prefix) and len(k) > len(prefix):
                extra.setdefault(urllib.parse.unquote(k[len(prefix) :]), []).append(v)
    return User(name, groups, {k: tuple(v) for k, v in extra.items()})


def access_review(user: User, namespace: str, name: str) -> dict[str, Any]:
    """The SubjectAccessReview: may `user` get the MemoryCapture `name` (the real one) in `namespace`?"""
    spec: dict[str, Any] = {
        "user": user.name,
        "groups": list(user.groups),
        "resourceAttributes": {
            "namespace": namespace,
            "verb": "get",
            "group": CAPTURE_GROUP,
            "resource": PLURAL,
            "name": name,
        },
    }
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def review_allows(review_status: Mapping[str, Any]) -> tuple[bool, str]:
    """(allowed, the reason to show when not)."""
    if review_status.get("allowed") is True and not review_status.get("denied"):
        return True, ""
    return False, str(review_status.get("reason") or review_status.get("evaluationError") or "")[:300]


# ------------------------------------------------------------------------------------------------ which file


@dataclasses.dataclass(frozen=True)
class VolumeFile:
    """Read `name` from the capture folder `folder` on the operator's volume (at most `max_bytes`)."""

    folder: str
    name: str


@dataclasses.dataclass(frozen=True)
class S3Files:
    """The capture is in S3: `plan` rebuilds its store; the listing carries presigned URLs."""

    plan: DeleteFiles


def listed_files(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`spec.files` as the API lists them: name, size and sha256 where known, only plain file names."""
    out = []
    for f in spec.get("files") or []:
        if not isinstance(f, Mapping) or not _FILE.match(str(f.get("name", ""))):
            continue
        entry: dict[str, Any] = {"name": str(f["name"])}
        if isinstance(f.get("size"), int):
            entry["size"] = f["size"]
        if isinstance(f.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", f["sha256"]):
            entry["sha256"] = f["sha256"]
        out.append(entry)
    return out


def locate(
    namespace: str, name: str, spec: Mapping[str, Any], volume_root: str, file: str | None
) -> VolumeFile | S3Files | dict[str, Any]:
    """Where the MemoryCapture's files are, or the Status body of why they cannot be served."""
    plan = plan_deletion(namespace, spec, volume_root)
    if isinstance(plan, KeepFiles):
        return not_found(namespace, name, f"its files cannot be served: {plan.reason}")
    if file is not None and file not in {f["name"] for f in listed_files(spec)}:
        return not_found(namespace, name, f"it lists no file {file!r} in spec.files")
    if plan.scheme == "s3":
        return S3Files(plan)
    return VolumeFile(f"{volume_root.rstrip('/')}/{plan.path}", file or "")


def files_body(
    namespace: str, name: str, spec: Mapping[str, Any], urls: Mapping[str, str], expires_seconds: int
) -> dict[str, Any]:
    """The answer to GET .../memorycaptures/NAME: the files, and for S3 captures a presigned URL each."""
    storage = spec.get("storage") if isinstance(spec.get("storage"), Mapping) else {}
    assert isinstance(storage, Mapping)
    files = []
    for f in listed_files(spec):
        if f["name"] in urls:
            f["url"] = urls[f["name"]]
        files.append(f)
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "location": str(storage.get("location", ""))[:2048],
        "source": "presigned" if urls else "apiserver",
        "files": files,
    }
    if urls:
        body["urlsExpireSeconds"] = expires_seconds
    return body
