"""A capture store in an S3 (or S3-compatible) bucket, crash-safe without rename: files first, manifest last.

S3 has no rename, so a capture is written in place under `<prefix>/<namespace>/<memorywatch>/<pod>/<time>-<rule>/`
and becomes visible only when `manifest.json` is uploaded, LAST; readers list manifests only. A crash before the
manifest leaves objects no reader ever sees; `sweep_partials` deletes them once they are older than an hour, but
only objects that carry the operator's own marker (object metadata `memorywatch-writer`) in folders the operator
claimed, reading a bounded number of listing pages in a bounded time: a bucket a tenant names may hold anything.

Folder ownership: `begin` first checks the folder is empty, then claims it with a small `.capture-in-progress`
object uploaded with `If-None-Match: *` (a conditional put that fails when the object already exists), so two
captures with the same key in the same second never write into one folder: the loser takes a `-<hex>` suffix,
like the filesystem store. The claim is deleted after the manifest is written.

Every upload carries Content-MD5 and x-amz-checksum-sha256 (the server refuses a corrupted body) and the sha256
in the object metadata, which `read` checks again on the way back.

Errors: every boto3/botocore exception is translated (`store/s3_errors.py`); nothing from botocore escapes. `StoreUnavailable`
for refused credentials ("check the credentials Secret"), a missing bucket, an unreachable endpoint ("S3
endpoint unreachable", after boto3's retries) and 5xx answers; `CaptureNotFound` for a missing capture file;
`StoreError` for anything else the server refuses. Messages name the bucket and endpoint, never the secret key.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from memorywatch.store.base import (
    MANIFEST_NAME,
    CaptureKey,
    CaptureNotFound,
    CaptureRef,
    StoreError,
    StoreUnavailable,
    check_capture_path,
    resolve_ident,
    safe_segment,
)
from memorywatch.store.fallback import FallbackStore
from memorywatch.store.filesystem import STALE_PARTIAL_SECONDS
from memorywatch.store.s3_errors import translate
from memorywatch.store.s3_pending import CLAIM_NAME, S3PendingCapture
from memorywatch.store.s3_pinning import PinningUnsupported, pin_client

# FallbackStore is re-exported: the operator builds `FallbackStore(S3Store(...), FilesystemStore(pvc))`.
__all__ = ["CLAIM_NAME", "FallbackStore", "S3PendingCapture", "S3Store"]

log = logging.getLogger(__name__)

PROBE_PREFIX = ".memorywatch-probe-"
SHA256_METADATA = "sha256"
#: Object metadata on everything the operator writes; the sweep deletes nothing without it.
WRITER_METADATA = "memorywatch-writer"
WRITER_VALUE = "memorywatch"
#: The partial-capture sweep's budget: listing pages (1000 keys each) and seconds per sweep.
SWEEP_MAX_PAGES = 20
SWEEP_MAX_SECONDS = 30.0
#: key segments below the store prefix: namespace / memorywatch / pod / capture folder / file
_CAPTURE_DEPTH = 5
_MAX_FOLDER_ATTEMPTS = 5
_DELETE_BATCH = 1000


def _digests(data: bytes) -> tuple[str, str, str]:
    """(Content-MD5, x-amz-checksum-sha256, hex sha256) for one upload."""
    sha = hashlib.sha256(data)
    md5 = hashlib.md5(data, usedforsecurity=False)
    return (
        base64.b64encode(md5.digest()).decode(),
        base64.b64encode(sha.digest()).decode(),
        sha.hexdigest(),
    )


class S3Store:
    """Captures under `s3://<bucket>/<prefix>/`, same layout and `CaptureRef.path` as `FilesystemStore`.

    Methods are synchronous and safe to call from several threads at once (the engine calls them through
    `asyncio.to_thread`): one boto3 client per store, created lazily under a lock, because boto3 clients are
    thread-safe but sessions are not. `max_attempts` counts boto3's attempts per request (retries included).
    `pinned_addresses` (the addresses `store.policy.check_endpoint` checked) sends every connection there
    instead of resolving the endpoint's name again (`store/s3_pinning.py`).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        force_path_style: bool = True,
        connect_timeout_seconds: float = 5,
        read_timeout_seconds: float = 30,
        max_attempts: int = 3,
        pinned_addresses: Sequence[str] | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"not an S3 bucket name: {bucket!r}")
        if (access_key_id is None) != (secret_access_key is None):
            raise StoreError("give both the S3 access key id and the secret access key, or neither")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        self.region = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._config = Config(
            connect_timeout=connect_timeout_seconds,
            read_timeout=read_timeout_seconds,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if force_path_style else "virtual"},
            # We send our own Content-MD5 and SHA-256 on uploads; botocore's default CRC32 trailers are
            # refused by several S3-compatible servers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._client_lock = threading.Lock()
        # The addresses the S3 policy checked: every connection goes there, whatever DNS says later.
        self._pinned = tuple(pinned_addresses) if pinned_addresses else ()

    def __repr__(self) -> str:
        return f"S3Store({self.location!r}, endpoint={self.endpoint})"

    # --- naming -----------------------------------------------------------------------------------

    @property
    def _base(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def endpoint(self) -> str:
        """The endpoint in use, for messages: the configured URL, the one boto3 resolved, or AWS's."""
        if self.endpoint_url:
            return self.endpoint_url
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return f"AWS S3 ({self.region})"

    def key_of(self, path: str, name: str) -> str:
        return f"{self._base}{path}/{name}"

    def location_of(self, path: str) -> str:
        return f"s3://{self.bucket}/{self._base}{path}"

    # --- boto3 ------------------------------------------------------------------------------------

    def client(self) -> Any:
        """The store's one boto3 S3 client (created on first use)."""
        with self._client_lock:
            if self._client is None:
                try:
                    session = boto3.session.Session(
                        aws_access_key_id=self._access_key_id,
                        aws_secret_access_key=self._secret_access_key,
                        region_name=self.region,
                    )
                    client = session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
                    if self._pinned:
                        pin_client(client, self._pinned)
                    self._client = client
                except (BotoCoreError, ValueError, PinningUnsupported) as e:
                    raise StoreUnavailable(
                        f"cannot set up the S3 client for {self.location} at {self.endpoint}: {self._scrub(e)}"
                    ) from e
            return self._client

    def presign_get(self, path: str, names: list[str], expires_seconds: int) -> dict[str, str]:
        """Presigned GET URLs (SigV4, which every S3 server takes; botocore's default for presigning is not) for
        files of the capture at `path`, valid `expires_seconds`. Signing is local: no request is made."""
        try:
            session = boto3.session.Session(
                aws_access_key_id=self._access_key_id,
                aws_secret_access_key=self._secret_access_key,
                region_name=self.region,
            )
            signer = session.client("s3", endpoint_url=self.endpoint_url,
                                    config=self._config.merge(Config(signature_version="s3v4")))  # fmt: skip
            return {
                n: str(signer.generate_presigned_url("get_object", ExpiresIn=expires_seconds,
                                                     Params={"Bucket": self.bucket, "Key": self.key_of(path, n)}))
                for n in names
            }  # fmt: skip
        except (BotoCoreError, ValueError) as e:
            raise StoreUnavailable(f"cannot presign URLs for {self.location}: {self._scrub(e)}") from e

    def _scrub(self, e: BaseException | str) -> str:
        text = str(e)
        if self._secret_access_key:
            text = text.replace(self._secret_access_key, "<secret>")
        return text

    def translate(self, e: BotoCoreError | ClientError, doing: str) -> StoreError:
        """One botocore failure as the store's error, saying what we were doing and what to check."""
        return translate(e, doing, bucket=self.bucket, location=self.location, endpoint=self.endpoint,
                         scrub=self._scrub)  # fmt: skip

    def call(self, doing: str, operation: str, **params: Any) -> Any:
        """Run one S3 operation; any failure comes back as the store's own error."""
        client = self.client()
        try:
            return getattr(client, operation)(Bucket=self.bucket, **params)
        except (BotoCoreError, ClientError) as e:
            raise self.translate(e, doing) from e

    @staticmethod
    def _upload_params(key: str, data: bytes) -> dict[str, Any]:
        md5, sha_b64, sha_hex = _digests(data)
        return {
            "Key": key,
            "Body": data,
            "ContentMD5": md5,
            "ChecksumSHA256": sha_b64,
            "Metadata": {SHA256_METADATA: sha_hex, WRITER_METADATA: WRITER_VALUE},
        }

    def put(self, doing: str, key: str, data: bytes) -> None:
        self.call(doing, "put_object", **self._upload_params(key, data))

    def delete_keys(self, doing: str, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            answer = self.call(
                doing, "delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            failed = answer.get("Errors") or []
            if failed:
                first = failed[0]
                raise StoreError(
                    f"{doing}: {len(failed)} object(s) not deleted from {self.location}, first "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                )

    def _objects(self, doing: str, prefix: str, *, max_pages: int | None = None, page_keys: int = 1000
                 ) -> Iterator[dict[str, Any]]:  # fmt: skip
        token: str | None = None
        pages = 0
        while max_pages is None or pages < max_pages:
            pages += 1
            params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": page_keys}
            if token:
                params["ContinuationToken"] = token
            page = self.call(doing, "list_objects_v2", **params)
            yield from page.get("Contents") or []
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    # --- CaptureStore -----------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Prove the bucket is reachable, listable and writable (put, list, delete a probe); sweep partials."""
        probe = f"{self._base}{PROBE_PREFIX}{secrets.token_hex(4)}"
        self.put(f"cannot write a probe object to {self.location}", probe, b"ok")
        delete_probe = f"cannot delete the probe object from {self.location}"
        try:
            self.call(f"cannot list {self.location}", "list_objects_v2", Prefix=self._base, MaxKeys=1)
        except StoreError:
            with contextlib.suppress(StoreError):  # the listing's error is the one worth reporting
                self.call(delete_probe, "delete_object", Key=probe)
            raise
        self.call(delete_probe, "delete_object", Key=probe)
        self.sweep_partials()

    def sweep_partials(
        self,
        *,
        older_than_seconds: float = STALE_PARTIAL_SECONDS,
        max_pages: int = SWEEP_MAX_PAGES,
        max_seconds: float = SWEEP_MAX_SECONDS,
        page_keys: int = 1000,
    ) -> list[str]:
        """Delete what a crash (or an abort that could not reach S3) left of a capture: folders with no manifest,
        nothing newer than the cutoff, and the operator's claim object; within them, only objects that carry the
        operator's marker. Reads at most `max_pages` listing pages and stops after `max_seconds` (what it did not
        reach, a later sweep does). Returns the capture paths it deleted from."""
        deadline = time.monotonic() + max_seconds
        cutoff = dt.datetime.fromtimestamp(time.time() - older_than_seconds, dt.UTC)
        folders: dict[str, tuple[list[str], bool, dt.datetime]] = {}
        doing = f"cannot list {self.location} to sweep partial captures"
        for obj in self._objects(doing, self._base, max_pages=max_pages, page_keys=page_keys):
            parts = obj["Key"][len(self._base) :].split("/")
            if len(parts) != _CAPTURE_DEPTH:
                continue
            path = "/".join(parts[:4])
            keys, complete, newest = folders.get(path, ([], False, dt.datetime.min.replace(tzinfo=dt.UTC)))
            keys.append(obj["Key"])
            folders[path] = (keys, complete or parts[4] == MANIFEST_NAME, max(newest, obj["LastModified"]))
            if time.monotonic() > deadline:
                break
        removed = []
        for path, (keys, complete, newest) in sorted(folders.items()):
            claim = self.key_of(path, CLAIM_NAME)
            if complete or newest >= cutoff or claim not in keys:
                continue
            if time.monotonic() > deadline:
                log.info("sweep of %s stopped at its time budget (%.0fs)", self.location, max_seconds)
                break
            ours = [k for k in keys if self._written_by_us(k)]
            if claim not in ours:
                continue  # a claim-shaped object someone else wrote: not ours to judge
            self.delete_keys(f"cannot sweep the partial capture {self.location_of(path)}", ours)
            log.info("swept partial capture %s (last written %s)", self.location_of(path), newest.isoformat())
            removed.append(path)
        return removed

    def _written_by_us(self, key: str) -> bool:
        try:
            head = self.call(f"cannot read {key} in {self.location}", "head_object", Key=key)
        except StoreError:
            return False
        return bool((head.get("Metadata") or {}).get(WRITER_METADATA) == WRITER_VALUE)

    def begin(self, key: CaptureKey) -> S3PendingCapture:
        path = key.path
        for attempt in range(_MAX_FOLDER_ATTEMPTS):
            candidate = path if attempt == 0 else f"{path}-{secrets.token_hex(2)}"
            if self._claim(candidate):
                return S3PendingCapture(self, candidate)
        raise StoreError(
            f"no free capture folder for {self.location_of(path)} after {_MAX_FOLDER_ATTEMPTS} tries"
        )

    def _claim(self, path: str) -> bool:
        """Take an empty capture folder for one writer; False when it is (or just became) someone else's."""
        doing = f"cannot start a capture in {self.location_of(path)}"
        taken = self.call(doing, "list_objects_v2", Prefix=f"{self._base}{path}/", MaxKeys=1)
        if taken.get("KeyCount", 0) or taken.get("Contents"):
            return False
        claim = json.dumps(
            {"started": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
        ).encode()
        params = self._upload_params(self.key_of(path, CLAIM_NAME), claim)
        try:
            self.client().put_object(Bucket=self.bucket, IfNoneMatch="*", **params)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            if code != "NotImplemented":
                raise self.translate(e, doing) from e
            # A server without conditional puts: the emptiness check above is all we have.
            self.call(doing, "put_object", **params)
        except BotoCoreError as e:
            raise self.translate(e, doing) from e
        return True

    def list(self, prefix: str = "") -> list[CaptureRef]:
        """Complete captures (those with a manifest), oldest first."""
        refs = []
        for obj in self._objects(f"cannot list the captures in {self.location}", self._base + prefix):
            parts = obj["Key"][len(self._base) :].split("/")
            if len(parts) == _CAPTURE_DEPTH and parts[4] == MANIFEST_NAME and not parts[3].startswith("."):
                path = "/".join(parts[:4])
                refs.append(CaptureRef(path=path, location=self.location_of(path)))
        refs.sort(key=lambda r: (r.path.rsplit("/", 1)[-1], r.path))
        return refs

    def read(self, ref: CaptureRef, name: str) -> bytes:
        """One file of a capture, checked against the sha256 recorded when it was uploaded."""
        if name != safe_segment(name):
            raise CaptureNotFound(f"capture {ref.path} has no file {name!r}")
        doing = f"cannot read {name} of capture {ref.path} from {self.location}"
        try:
            answer = self.call(doing, "get_object", Key=self.key_of(ref.path, name))
        except CaptureNotFound as e:
            raise CaptureNotFound(f"capture {ref.path} has no file {name!r} in {self.location}") from e
        try:
            data: bytes = answer["Body"].read()
        except (BotoCoreError, ClientError) as e:
            raise self.translate(e, doing) from e
        finally:
            answer["Body"].close()
        expected = (answer.get("Metadata") or {}).get(SHA256_METADATA)
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise StoreError(
                f"{doing}: its content does not match the sha256 recorded at upload ({expected})"
            )
        return data

    def resolve(self, ident: str) -> CaptureRef:
        return resolve_ident(self.list(), ident)

    def delete(self, ref: CaptureRef) -> bool:
        """Delete every object of one capture folder, the manifest first (the capture stops being visible at
        once; what a failure leaves is a partial that the next delete, or the sweep, removes)."""
        check_capture_path(ref.path)
        folder = f"{self._base}{ref.path}/"
        doing = f"cannot delete the capture {self.location_of(ref.path)}"
        keys = [o["Key"] for o in self._objects(doing, folder, max_pages=SWEEP_MAX_PAGES)]
        keys = [k for k in keys if "/" not in k[len(folder) :]]
        if not keys:
            return False
        manifest = folder + MANIFEST_NAME
        if manifest in keys:
            self.delete_keys(doing, [manifest])
        self.delete_keys(doing, [k for k in keys if k != manifest])
        return True
