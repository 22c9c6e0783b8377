"""Event-loop lag: a timer asks to wake up every `period_seconds`; how late it wakes is time the loop spent on
something else without yielding (a parse, a CEL evaluation, a blocking call). Observed into
`memorywatch_event_loop_lag_seconds`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from memorywatch import metrics

PERIOD_SECONDS = 0.25


async def measure_lag(
    period_seconds: float = PERIOD_SECONDS,
    observe: Callable[[float], None] = metrics.EVENT_LOOP_LAG_SECONDS.observe,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Run until cancelled."""
    while True:
        due = monotonic() + period_seconds
        await asyncio.sleep(period_seconds)
        observe(max(0.0, monotonic() - due))
