"""botocore's failures as the store's own errors (`StoreUnavailable`, `CaptureNotFound`, `StoreError`), each saying
what the store was doing and what to check. Nothing from botocore escapes the S3 store; messages name the bucket
and endpoint, never the secret key (`scrub` takes it out of what the server or botocore said)."""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from memorywatch.store.base import CaptureNotFound, StoreError, StoreUnavailable

# Codes S3 and S3-compatible servers use when the key pair itself is wrong (versitygw says XAdminUserNotFound).
_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "XAdminUserNotFound", "InvalidToken",
                               "ExpiredToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed",
                               "InvalidClientTokenId"})  # fmt: skip
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
PERMISSIONS_HINT = "s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject"


def translate(
    e: BotoCoreError | ClientError,
    doing: str,
    *,
    bucket: str,
    location: str,
    endpoint: str,
    scrub: Callable[[BaseException | str], str],
) -> StoreError:
    """One botocore failure as the store's error, saying what we were doing and what to check."""
    where = f"{location} at {endpoint}"
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        said = scrub(f"{code}: {error.get('Message', '')}".rstrip(": "))
        if code == "NoSuchBucket":
            return StoreUnavailable(
                f"{doing}: the bucket {bucket!r} does not exist at {endpoint}; create it or "
                "fix the bucket name"
            )
        if code in _CREDENTIAL_CODES:
            return StoreUnavailable(
                f"{doing}: {where} refused the credentials ({said}); check the credentials Secret "
                "(access key id and secret access key)"
            )
        if code == "AccessDenied" or status == 403:
            return StoreUnavailable(
                f"{doing}: {where} denied access ({said}); check the credentials Secret and that its key "
                f"is allowed {PERMISSIONS_HINT} on the bucket"
            )
        if code in _NOT_FOUND_CODES or status == 404:
            return CaptureNotFound(f"{doing}: not found in {where} ({said})")
        if (isinstance(status, int) and status >= 500) or code in ("SlowDown", "RequestTimeout"):
            return StoreUnavailable(f"{doing}: {where} failed after retries ({said})")
        return StoreError(f"{doing}: {where} refused the request ({said})")
    if isinstance(e, NoCredentialsError | PartialCredentialsError):
        return StoreUnavailable(
            f"{doing}: no S3 credentials for {location}: {scrub(e)}; check the credentials "
            "Secret (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or the workload identity"
        )
    if isinstance(e, BotoConnectionError | HTTPClientError):
        return StoreUnavailable(f"{doing}: S3 endpoint unreachable ({endpoint}, bucket {bucket}): {scrub(e)}")
    return StoreUnavailable(f"{doing}: {where}: {scrub(e)}")
