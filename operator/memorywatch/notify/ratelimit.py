"""A watch's notification rate limit (`spec.notify.rateLimit`): a token bucket, pure (the clock is passed in).

`burst` notifications may go at once; after that one more every `interval_seconds`. A notification over the
limit is not queued for later: it is dropped and counted (`memorywatch_notifications_total{result="rate-limited"}`),
so a rule that fires in a loop, or a tenant who tunes one to, cannot flood a channel or the operator's queue.
"""

from __future__ import annotations

import dataclasses

#: The least interval the CRD accepts (`spec.notify.rateLimit.interval`), and the largest burst.
MIN_INTERVAL_SECONDS = 10.0
MAX_BURST = 20


@dataclasses.dataclass(frozen=True)
class RateLimit:
    interval_seconds: float = 60.0
    burst: int = 5

    def __post_init__(self) -> None:
        if self.interval_seconds < MIN_INTERVAL_SECONDS:
            raise ValueError(f"rateLimit.interval must be at least {MIN_INTERVAL_SECONDS:g}s")
        if not 1 <= self.burst <= MAX_BURST:
            raise ValueError(f"rateLimit.burst must be between 1 and {MAX_BURST}")


class TokenBucket:
    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self._tokens = float(limit.burst)
        self._at = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)  # a clock stepping back never adds tokens
        self._tokens = min(float(self.limit.burst), self._tokens + elapsed / self.limit.interval_seconds)
        self._at = max(self._at, now)

    def take(self, now: float) -> bool:
        """True (and one token spent) when a notification may go now."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def reconfigure(self, limit: RateLimit, now: float) -> None:
        """A new limit from an edited spec: the tokens left carry over, capped at the new burst."""
        if limit != self.limit:
            self._refill(now)
            self.limit = limit
            self._tokens = min(self._tokens, float(limit.burst))
