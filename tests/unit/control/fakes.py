"""Fakes for the controller's unit tests, named for what they are. Each stands in for one collaborator the
controller reaches through a small protocol (control/ports.py, actions.ActionRunner, the engine's scraper); the
fault-injecting ones make the failures this suite is about (a 500/429 from the API server for a while, an
exception in status writing) happen on demand."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from memorywatch.actions import ActContext, ActionOutcome, Workload
from memorywatch.control.status import iso
from memorywatch.k8s import (
    ApiUnavailable,
    ConflictError,
    KubeError,
    NotFoundError,
    ObjectRef,
    TooManyRequests,
)
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.model import Probe
from memorywatch.samples import Sample
from memorywatch.scrape import Limits, ScrapeError, TargetConfig
from memorywatch.targets import PodInfo

T0 = 1_760_000_000.0


class FakeClock:
    """Wall time that moves only when a test (or a fake) moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass(frozen=True)
class PostedEvent:
    kind: str
    name: str
    type: str
    reason: str
    message: str


class FakeKube:
    """An in-memory API server for what the controller calls: Secrets by (namespace, name), status patches
    and events recorded in order."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.secret_reads = 0
        self.statuses: list[dict[str, Any]] = []
        self.events: list[PostedEvent] = []
        #: MemoryCaptures by (namespace, name); `captures_fail` makes every create answer 503.
        self.captures: dict[tuple[str, str], dict[str, Any]] = {}
        self.captures_fail = False
        self.captures_invalid = False
        #: The creationTimestamp the next MemoryCaptures get (tests move it).
        self.created_at = T0

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        self.secret_reads += 1
        data = self.secrets.get((namespace, name))
        if data is None:
            raise NotFoundError(f"get Secret {namespace}/{name}: 404 Not Found", 404)
        if key not in data:
            raise NotFoundError(f"Secret {namespace}/{name} has no key {key!r}", 404)
        return data[key]

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.statuses.append(dict(status))

    async def event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.events.append(PostedEvent(ref.kind, ref.name, type_, reason, message))

    async def create_capture(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = str(body["metadata"]["name"])
        if self.captures_fail:
            raise ApiUnavailable(f"create MemoryCapture {namespace}/{name}: 503 Service Unavailable", 503)
        if self.captures_invalid:
            raise KubeError(f"create MemoryCapture {namespace}/{name}: 422 Unprocessable Entity", 422)
        if (namespace, name) in self.captures:
            raise ConflictError(f"create MemoryCapture {namespace}/{name}: 409 Conflict", 409)
        stored = {k: v for k, v in body.items() if k != "status"}  # a status subresource: ignored on create
        stored["metadata"] = dict(body["metadata"], creationTimestamp=iso(self.created_at))
        self.captures[(namespace, name)] = stored
        return stored

    async def patch_capture_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        if (namespace, name) not in self.captures:
            raise NotFoundError(f"MemoryCapture {namespace}/{name}: 404 Not Found", 404)
        self.captures[(namespace, name)]["status"] = dict(status)

    async def list_captures(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [
            c
            for (ns, _), c in self.captures.items()
            if ns == namespace and c["metadata"].get("labels", {}).get(key) == value
        ]

    async def delete_capture(self, namespace: str, name: str) -> None:
        if self.captures.pop((namespace, name), None) is None:
            raise NotFoundError(f"MemoryCapture {namespace}/{name}: 404 Not Found", 404)

    @property
    def status(self) -> dict[str, Any]:
        return self.statuses[-1] if self.statuses else {}

    def condition(self, type_: str) -> dict[str, Any]:
        for c in self.status.get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return {}

    def warnings(self, reason: str) -> list[PostedEvent]:
        return [e for e in self.events if e.type == "Warning" and e.reason == reason]


class FaultInjectingKube(FakeKube):
    """FakeKube whose Secret reads answer 500 or 429 until `clock()` reaches `secrets_fail_until`, and whose status
    writes raise `status_error` for the next `status_failures` calls (an unexpected exception, not an API error)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.secrets_fail_until = float("-inf")
        self.secret_status = 500
        self.status_failures = 0
        self.status_error: Exception = RuntimeError("injected: status rendering blew up")

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        if self.clock() < self.secrets_fail_until:
            self.secret_reads += 1
            if self.secret_status == 429:
                raise TooManyRequests(f"get Secret {namespace}/{name}: 429 Too Many Requests", 429)
            raise ApiUnavailable(f"get Secret {namespace}/{name}: 500 Internal Server Error", 500)
        return await super().secret_value(namespace, name, key)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        if self.status_failures > 0:
            self.status_failures -= 1
            raise self.status_error
        await super().patch_status(namespace, name, status)


class SyntheticScraper:
    """Stands in for the Scraper: answers samples of a Go process whose goroutines grow by `growth` per
    sample, each `step_seconds` of fake time after the last; profiles are not served (baselines stay empty)."""

    def __init__(self, clock: FakeClock, *, growth: int = 0, step_seconds: float = 10.0) -> None:
        self.clock = clock
        self.growth = growth
        self.step_seconds = step_seconds
        self.samples: list[tuple[TargetConfig, Sample]] = []
        self.goroutines: dict[str, int] = {}
        self.limits = Limits()

    async def sample(
        self, target: TargetConfig, *, probes: frozenset[Probe] = frozenset(), now: Any = None
    ) -> Sample:
        self.clock.advance(self.step_seconds)
        name = target.name or target.url
        count = self.goroutines.get(name, 100) + self.growth
        self.goroutines[name] = count
        s = Sample(
            target=name, time=self.clock(), goroutines=count, memstats=MemStats(num_gc=len(self.samples) + 1)
        )
        self.samples.append((target, s))
        return s

    async def fetch_profile(self, target: TargetConfig, name: str, **_: Any) -> bytes:
        raise ScrapeError(target.display_name, name, "not served by the synthetic scraper")

    async def fetch_text(self, target: TargetConfig, name: str, **_: Any) -> Any:
        raise ScrapeError(target.display_name, name, "not served by the synthetic scraper")

    async def fetch_profile_info(self, target: TargetConfig, name: str, **_: Any) -> Any:
        raise ScrapeError(target.display_name, name, "not served by the synthetic scraper")

    async def parse_in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """pprof jobs run inline: the fake serves no profile, so they only ever see empty input."""
        return fn(*args)


class RecordingActions:
    """An ActionRunner that changes nothing and records what it was asked; every pod belongs to `workload`."""

    def __init__(self, workload: Workload | None = None) -> None:
        self.workload = workload
        self.calls: list[tuple[str, str, bool]] = []
        self.contexts: list[ActContext | None] = []

    async def workload_of(self, namespace: str, pod: str) -> Workload | None:
        return self.workload

    async def act(
        self,
        action: str,
        namespace: str,
        pod: str,
        *,
        dry_run: bool,
        scale_step: int = 1,
        scale_max_replicas: int | None = None,
        context: ActContext | None = None,
    ) -> ActionOutcome:
        self.calls.append((action, pod, dry_run))
        self.contexts.append(context)
        reason = "DryRun" if dry_run else "Evicted"
        return ActionOutcome(action, pod, self.workload, not dry_run, dry_run, reason, f"{reason} {pod}")


class Stop:
    """kopf's DaemonStopped as the controller uses it: truthy once set, wait(timeout) sleeps until then."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - kopf's signature
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()


def pod(
    name: str, *, uid: str | None = None, restarts: int = 0, ip: str = "127.0.0.9", app: str = "shop"
) -> PodInfo:
    return PodInfo(
        namespace="ns",
        name=name,
        uid=uid or f"uid-{name}",
        labels={"app": app},
        ip=ip,
        phase="Running",
        deleting=False,
        ports={"pprof": 6060, "6060": 6060},
        owner=("ReplicaSet", "shop-1"),
        memory_limit_bytes=None,
        restart_count=restarts,
    )


async def refuse_forward(namespace: str, pod: str, port: int, scheme: str) -> str:
    raise AssertionError("this test uses Direct access: no port-forward expected")


async def no_close(namespace: str, pod: str, port: int) -> None:
    return None
