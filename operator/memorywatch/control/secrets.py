"""Secret keys named by a MemoryWatch, from a TTL cache: one API read per Secret key per `ttl_seconds`, never one
per pod per reconcile. A changed Secret is seen within the TTL (the controller swaps the credentials in place).
When a refresh fails and a value is known, the known value keeps serving (with the error, for status) for up to
`max_stale_seconds`, so an API server answering 500 or 429 for a while does not drop a target. After a failure
the key is not asked again for `retry_seconds`. The operator only has `get` on Secrets, so no watch.

Values are kept in memory only and never logged."""

from __future__ import annotations

import dataclasses

from memorywatch import metrics
from memorywatch.control.ports import Clock, SecretReader
from memorywatch.k8s import KubeError

DEFAULT_TTL_SECONDS = 60.0
DEFAULT_RETRY_SECONDS = 10.0
DEFAULT_MAX_STALE_SECONDS = 3600.0
MAX_ENTRIES = 256


@dataclasses.dataclass(frozen=True)
class SecretValue:
    value: str = dataclasses.field(repr=False)
    #: Set when the value is an older one served because the refresh failed: the failure (no secret in it).
    stale_error: KubeError | None = None


@dataclasses.dataclass
class _Entry:
    value: str | None = dataclasses.field(default=None, repr=False)
    fetched_at: float = float("-inf")
    error: KubeError | None = None
    failed_at: float = float("-inf")


class SecretCache:
    def __init__(
        self,
        reader: SecretReader,
        clock: Clock,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS,
    ) -> None:
        self._reader = reader
        self._clock = clock
        self.ttl_seconds = ttl_seconds
        self.retry_seconds = retry_seconds
        self.max_stale_seconds = max_stale_seconds
        self._entries: dict[tuple[str, str, str], _Entry] = {}

    async def get(self, namespace: str, name: str, key: str) -> SecretValue:
        """The key's value, fresh or (after a failed refresh) stale with the reason; raises `KubeError` when
        no value is known, or the last known one is older than `max_stale_seconds`."""
        ident = (namespace, name, key)
        now = self._clock()
        entry = self._entries.get(ident)
        if entry is None:
            entry = self._entries[ident] = _Entry()
            if len(self._entries) > MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
        if entry.value is not None and now - entry.fetched_at < self.ttl_seconds:
            return SecretValue(entry.value)
        if entry.error is None or now - entry.failed_at >= self.retry_seconds:
            try:
                value = await self._reader.secret_value(namespace, name, key)
            except KubeError as e:
                metrics.SECRET_READS.labels(result="error").inc()
                entry.error, entry.failed_at = e, now
            else:
                metrics.SECRET_READS.labels(result="ok").inc()
                entry.value, entry.fetched_at, entry.error = value, now, None
                return SecretValue(value)
        assert entry.error is not None
        if entry.value is not None and now - entry.fetched_at < self.max_stale_seconds:
            return SecretValue(entry.value, stale_error=entry.error)
        raise entry.error

    def forget_all(self) -> None:
        self._entries.clear()
