"""The MemoryCapture resource, pure: its name, its body built from a capture's manifest, where its files are, and
the decisions its finalizer takes. No I/O and no clock of its own, so all of it is unit-tested.

A MemoryCapture is written once per capture in the namespace of the MemoryWatch that took it and is owned by it
(ownerReference, so deleting the watch garbage-collects its captures). It carries the operator's finalizer: deleting
it deletes its files from the store first (control/capture_files.py), retried with backoff, and given up after
`GIVE_UP_SECONDS` with a Warning that names the location (the files are then left for an administrator).

Everything in a MemoryCapture is hostile input when read back (a user with edit rights could change it): the file
location is trusted only when its path is a capture path of the MemoryCapture's own namespace inside a store the
operator itself reaches (`plan_deletion`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from memorywatch.api.spec import S3Spec
from memorywatch.api.units import format_bytes

GROUP = "memorywatch.io"
VERSION = "v1alpha1"
KIND = "MemoryCapture"
PLURAL = "memorycaptures"
#: The operator's one finalizer (kopf's `settings.persistence.finalizer`), set when the object is created so that
#: a capture deleted before the operator saw it still has its files deleted.
FINALIZER = "memorywatch.io/finalizer"
LABEL_WATCH = "memorywatch.io/memorywatch"
LABEL_WATCH_UID = "memorywatch.io/memorywatch-uid"
MAX_NAME_CHARS = 63  # a DNS-1123 label: also usable as a label value (the API allows 253 for the name)
MAX_LIST_ITEMS = 10
MAX_FILES = 64
MAX_ERRORS = 20
MANIFEST_NAME = "manifest.json"
#: The deletion finalizer's retries: 5 s doubling up to 5 min, for at most an hour, then the files are left.
RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
GIVE_UP_SECONDS = 3600.0

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,119}$")


def _dns(text: str) -> str:
    return _NOT_DNS.sub("-", text.lower()).strip("-")


def _compact_time(iso_time: str) -> str:
    """`20261125t174512` from an ISO time (`t` because names are lowercase); `unknown` when unreadable."""
    try:
        when = dt.datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return "unknown"
    return when.astimezone(dt.UTC).strftime("%Y%m%dt%H%M%S")


def capture_name(pod: str, rule: str, iso_time: str, location: str) -> str:
    """`<pod>-<rule>-<time>-<hash>`, at most 63 characters, a valid DNS-1123 label whatever the inputs: pod and rule
    are shortened to fit, and the hash of the location keeps two captures of the same second apart."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:8]
    tail = f"{_compact_time(iso_time)}-{digest}"
    room = MAX_NAME_CHARS - len(tail) - 1
    pod_part, rule_part = _dns(pod), _dns(rule)
    rule_part = rule_part[: max(8, room // 3)].strip("-")
    head = "-".join(p for p in (pod_part, rule_part) if p)[:room].strip("-")
    return f"{head}-{tail}" if head else f"capture-{tail}"[:MAX_NAME_CHARS]


def capture_path(location: str) -> str | None:
    """The capture's path in its store (`<namespace>/<memorywatch>/<pod>/<time>-<rule>`): the location's last four
    segments, each a safe segment; None when the location is not shaped like a capture folder."""
    parsed = urllib.parse.urlsplit(location)
    if parsed.scheme not in ("file", "s3") or parsed.query or parsed.fragment:
        return None
    parts = urllib.parse.unquote(parsed.path).rstrip("/").split("/")
    if len(parts) < 5:
        return None
    path = parts[-4:]
    if not all(_SEGMENT.match(p) for p in path):
        return None
    return "/".join(path)


def label_value(text: str) -> str | None:
    """`text` when it can be a label value, else None (names up to 253 characters cannot)."""
    return text if len(text) <= 63 and _LABEL_VALUE.match(text) else None


def _heap_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows[:MAX_LIST_ITEMS]:
        out.append(
            {
                "function": str(r.get("function", "?"))[:1024],
                "file": str(r.get("file", ""))[:1024],
                "line": int(r.get("line") or 0),
                "inuseBytesDelta": int(r.get("inuseBytesDelta") or 0),
                "inuseBytes": int(r.get("inuseBytes") or 0),
            }
        )
    return out


def _goroutine_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "function": str(r.get("function", "?"))[:1024],
            "before": int(r.get("before") or 0),
            "after": int(r.get("after") or 0),
            "delta": int(r.get("delta") or 0),
        }
        for r in rows[:MAX_LIST_ITEMS]
    ]


def _files(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in rows[: MAX_FILES - 1]:
        entry = {"name": str(r.get("name", ""))[:255], "size": int(r.get("size") or 0)}
        if r.get("sha256"):
            entry["sha256"] = str(r["sha256"])[:64]
        if r.get("format"):
            entry["format"] = str(r["format"])[:32]
        out.append(entry)
    out.append({"name": MANIFEST_NAME, "format": "json"})
    return out


@dataclasses.dataclass(frozen=True)
class Owner:
    """The MemoryWatch that took the capture."""

    namespace: str
    name: str
    uid: str


def build_body(
    manifest: Mapping[str, Any],
    *,
    location: str,
    owner: Owner,
    pod_uid: str | None,
    stored_in: str,
    s3: Mapping[str, Any] | None,
    action_type: str,
) -> dict[str, Any]:
    """The MemoryCapture for one capture, from the manifest the capture wrote (`engine/capture.py`)."""
    pod = str(manifest.get("pod", ""))
    rule = str(manifest.get("rule", ""))
    when = str(manifest.get("time", ""))
    breaches = manifest.get("breaches") or [{}]
    files = _files(list(manifest.get("files") or []))
    total = sum(int(f.get("size") or 0) for f in files)
    labels = {LABEL_WATCH_UID: owner.uid}
    if (watch := label_value(owner.name)) is not None:
        labels[LABEL_WATCH] = watch
    storage: dict[str, Any] = {"location": location[:2048], "storedIn": stored_in}
    if (path := capture_path(location)) is not None:
        storage["path"] = path
    if s3 is not None and stored_in == "primary":
        storage["s3"] = dict(s3)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": capture_name(pod, rule, when, location),
            "namespace": owner.namespace,
            "labels": labels,
            "finalizers": [FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "MemoryWatch",
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                    # False: the MemoryWatch is deleted at once; the garbage collector deletes its captures after.
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "memoryWatch": owner.name,
            "pod": pod,
            **({"podUID": pod_uid} if pod_uid else {}),
            "rule": rule,
            "kind": str(breaches[0].get("kind", ""))[:63],
            "time": when,
            "summary": str(manifest.get("summary", ""))[:4096],
            "size": f"{len(files)} files, {format_bytes(total)}",
            "totalBytes": total,
            "heapGrowth": _heap_rows(list((manifest.get("heap") or {}).get("topGrowth") or [])),
            "goroutineGrowth": _goroutine_rows(
                list((manifest.get("goroutines") or {}).get("topGrowth") or [])
            ),
            "files": files,
            "errors": [str(e)[:1024] for e in list(manifest.get("errors") or [])[:MAX_ERRORS]],
            "storage": storage,
        },
        "status": {"action": action_status(action_type, "Pending" if action_type != "None" else "None", "")},
    }


def action_status(type_: str, result: str, message: str) -> dict[str, str]:
    return {"type": type_[:32], "result": result[:64], "message": message[:1024]}


# ------------------------------------------------------------------------------------------------ deletion


@dataclasses.dataclass(frozen=True)
class DeleteFiles:
    """Delete the capture at `path` from the store `scheme` names (`file`: the operator's volume, `s3`: a bucket)."""

    scheme: str
    path: str
    location: str
    s3: Mapping[str, Any] | None


@dataclasses.dataclass(frozen=True)
class KeepFiles:
    """Delete nothing and let the MemoryCapture go; `reason` says why (a Warning event carries it)."""

    reason: str


def plan_deletion(namespace: str, spec: Mapping[str, Any], volume_root: str) -> DeleteFiles | KeepFiles:
    """What the finalizer deletes for a MemoryCapture of `namespace` with this `spec`.

    Only a capture of the MemoryCapture's own namespace is ever deleted: the path must be a capture path whose
    first segment is the namespace; a file location must be that path right under the operator's volume."""
    storage = spec.get("storage") if isinstance(spec.get("storage"), Mapping) else {}
    assert isinstance(storage, Mapping)
    location = str(storage.get("location") or "")
    path = capture_path(location)
    if path is None:
        return KeepFiles(f"spec.storage.location {location[:200]!r} is not a capture folder's URL")
    if path.split("/")[0] != namespace:
        return KeepFiles(
            f"the capture {path} is not in namespace {namespace}; its files are not deleted from here"
        )
    scheme = urllib.parse.urlsplit(location).scheme
    if scheme == "file":
        expected = f"{volume_root.rstrip('/')}/{path}"
        if urllib.parse.unquote(urllib.parse.urlsplit(location).path) != expected:
            return KeepFiles(f"{location[:200]} is not in the operator's volume {volume_root}")
        return DeleteFiles("file", path, location, None)
    s3 = storage.get("s3")
    return DeleteFiles("s3", path, location, dict(s3) if isinstance(s3, Mapping) else None)


@dataclasses.dataclass(frozen=True)
class Retry:
    delay_seconds: float
    message: str


@dataclasses.dataclass(frozen=True)
class GiveUp:
    message: str


def after_failure(error: str, *, retry: int, elapsed_seconds: float, location: str) -> Retry | GiveUp:
    """What the finalizer does when the store could not delete the files: retry with exponential backoff, or,
    after `GIVE_UP_SECONDS`, let the MemoryCapture go (a namespace being deleted must not hang on a dead store)."""
    if elapsed_seconds >= GIVE_UP_SECONDS:
        return GiveUp(
            f"could not delete the files of {location[:300]} for {elapsed_seconds / 60:.0f} min ({error}); the "
            "MemoryCapture is released and its files are left in the store: delete them by hand"
        )
    delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** min(retry, 16))
    return Retry(
        delay, f"cannot delete the files of {location[:300]} yet ({error}); retrying in {delay:.0f}s"
    )


# ------------------------------------------------------------------------------------------------ consistency


def orphaned(
    captures: Sequence[Mapping[str, Any]], stored: set[str], roots: Sequence[str], *, now: float, grace: float
) -> list[str]:
    """Names of the MemoryCaptures whose files are gone from the store (retention pruned them, or someone
    deleted them): only those whose location lies in one of the store's `roots`, not being deleted already,
    and older than `grace` seconds (their store listing may predate them)."""
    out = []
    for c in captures:
        meta = c.get("metadata") or {}
        location = str(((c.get("spec") or {}).get("storage") or {}).get("location") or "")
        if meta.get("deletionTimestamp") or not any(location.startswith(r.rstrip("/") + "/") for r in roots):
            continue
        created = str(meta.get("creationTimestamp") or "")
        try:
            age = now - dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        if age >= grace and location not in stored:
            out.append(str(meta.get("name")))
    return out


def s3_json(s3: S3Spec) -> dict[str, Any]:
    """A watch's parsed S3 settings back in the MemoryWatch's field names (spec.capture.storage.s3): what a
    MemoryCapture keeps so its files can be deleted after the watch is gone. Names of Secrets, never values."""
    out: dict[str, Any] = {"bucket": s3.bucket, "forcePathStyle": s3.force_path_style}
    if s3.prefix:
        out["prefix"] = s3.prefix
    if s3.endpoint:
        out["endpoint"] = s3.endpoint
    if s3.region:
        out["region"] = s3.region
    if s3.credentials_secret:
        out["credentialsSecretRef"] = {
            "name": s3.credentials_secret,
            "accessKeyIdKey": s3.access_key_id_key,
            "secretAccessKeyKey": s3.secret_access_key_key,
        }
    return out


def store_spec(s3: Mapping[str, Any] | None) -> dict[str, Any]:
    """A MemoryWatch spec that parses (`api.spec.parse_spec`) to the store a MemoryCapture's files are in, so the
    finalizer builds that store through the same checks (S3 policy, Secrets by consent) as the watch did."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"memorywatch.io/finalizer": "files"}},
        "endpoint": {"port": 6060},
    }
    if s3 is not None:
        spec["capture"] = {"storage": {"s3": dict(s3)}}
    return spec
