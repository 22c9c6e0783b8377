"""What is broken right now, for the Degraded condition. Pure: times come in as arguments.

A fault is keyed by (target, component). It clears when that component shows it works again (the engine's next
sample of the target for loop/rule/baseline faults, the next capture for capture faults, a supervised task's
next success), or when it has not repeated for `forget_seconds` (the task was not run again)."""

from __future__ import annotations

import dataclasses

FORGET_SECONDS = 600.0
MAX_FAULTS = 64


@dataclasses.dataclass(frozen=True)
class Fault:
    target: str  # pod name; "" for the watch itself
    component: str  # loop, capture, baseline, rule:<name>, status, events, reconcile, action, ...
    cause: str  # the exception's class name, or a typed limit's name
    message: str
    time: float
    retry_seconds: float | None = None

    def describe(self) -> str:
        where = f"pod {self.target}, {self.component}" if self.target else self.component
        retry = (
            f" (retrying in {self.retry_seconds:.0f}s)"
            if self.retry_seconds is not None
            else " (not retried)"
        )
        return f"{where}: {self.cause}: {self.message}{retry}"


class FaultBook:
    def __init__(self, quiet_seconds: float = 15.0, forget_seconds: float = FORGET_SECONDS) -> None:
        self.quiet_seconds = quiet_seconds
        self.forget_seconds = forget_seconds
        self._faults: dict[tuple[str, str], Fault] = {}
        self._recovered: set[tuple[str, str]] = set()

    def record(self, fault: Fault) -> None:
        key = (fault.target, fault.component)
        self._faults.pop(key, None)
        self._faults[key] = fault
        self._recovered.discard(key)
        while len(self._faults) > MAX_FAULTS:
            oldest = next(iter(self._faults))
            del self._faults[oldest]
            self._recovered.discard(oldest)

    def recovered(self, target: str, component: str) -> None:
        """The component worked again after its last fault: it clears once `quiet_seconds` have passed since
        that fault without a new one (so status shows it at least once, and a task failing on every tick
        stays reported instead of flapping)."""
        if (target, component) in self._faults:
            self._recovered.add((target, component))

    def sample_ok(self, target: str, time: float) -> None:
        """A sample of `target` taken at `time` was judged: its loop, rules and baseline work again."""
        for key, f in self._faults.items():
            if f.target == target and f.component != "capture" and f.time <= time:
                self._recovered.add(key)

    def capture_ok(self, target: str, time: float) -> None:
        f = self._faults.get((target, "capture"))
        if f is not None and f.time <= time:
            self._recovered.add((target, "capture"))

    def forget_target(self, target: str) -> None:
        for key in [k for k in self._faults if k[0] == target]:
            del self._faults[key]
            self._recovered.discard(key)

    def active(self, now: float) -> list[Fault]:
        """The current faults, newest first."""
        for key, f in list(self._faults.items()):
            age = now - f.time
            if age >= self.forget_seconds or (key in self._recovered and age >= self.quiet_seconds):
                del self._faults[key]
                self._recovered.discard(key)
        return sorted(self._faults.values(), key=lambda f: -f.time)
