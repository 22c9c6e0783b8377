"""One waiter per state on kopf's operator-wide ToggleSet, instead of one per object.

kopf 1.45 pre-populates indexes at startup: its watcher makes a toggle in the operator-wide `ToggleSet` for each
object of an indexed kind (here: every pod of the watched namespaces), and each object's worker, once it has
indexed its object, waits on that set's `asyncio.Condition` until every object is indexed. Every toggle change
calls `notify_all`, so with N objects the ~2N changes wake up to N waiters each: O(N²) wake-ups, each re-taking the
lock and re-checking the set. hack/scale-test found it: with 5,000 pods in the namespace each of 3 replicas spent
over 6 minutes at a third of a core in `ToggleSet.make_toggle` and followed no pod (docs/scaling.md, "Scale test on
the local control plane"). A replica of a sharded install indexes every pod, not only its share, so sharding does
not help here.

`install()` makes the waiters for one state share a single wait on the condition (a task, shielded so that one
cancelled caller does not cancel the others): the same condition, checked once per change instead of once per
waiter. It is applied by `memorywatch run` before kopf starts.
"""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

_original_wait_for = aiotoggles.ToggleSet.wait_for
_SHARED = "_memorywatch_shared_waits"


async def shared_wait_for(self: aiotoggles.ToggleSet, state: bool) -> None:
    """`ToggleSet.wait_for(state)`: returns once the set is on (True) or off (False)."""
    want = bool(state)
    if self.is_on() == want:
        return
    shared: dict[bool, asyncio.Future[None]] = self.__dict__.setdefault(_SHARED, {})
    task = shared.get(want)
    if task is None or task.done():
        task = asyncio.ensure_future(_original_wait_for(self, want))
        shared[want] = task
    await asyncio.shield(task)


def install() -> None:
    aiotoggles.ToggleSet.wait_for = shared_wait_for  # type: ignore[method-assign]
