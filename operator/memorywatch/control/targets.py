"""The pods a watch follows, as the controller knows them: how each is reached, which process it was (pod UID
and containers' restartCount, to tell the engine when a new one took its place), and its last scrape outcome."""

from __future__ import annotations

import dataclasses

from memorywatch.control.resolve import Resolution
from memorywatch.control.status import ScrapeError
from memorywatch.scrape import TargetConfig
from memorywatch.targets import PodInfo


@dataclasses.dataclass
class PodTarget:
    uid: str
    restart_count: int
    target: TargetConfig | None
    port: int | None
    limit_bytes: int | None
    started_at: float | None = None
    last_ok: float | None = None
    error: str | None = None
    error_reason: str | None = None


class TargetBook:
    def __init__(self) -> None:
        self._pods: dict[str, PodTarget] = {}

    def __len__(self) -> int:
        return len(self._pods)

    def __contains__(self, name: object) -> bool:
        return name in self._pods

    def names(self) -> list[str]:
        return list(self._pods)

    def get(self, name: str) -> PodTarget | None:
        return self._pods.get(name)

    def pop(self, name: str) -> PodTarget | None:
        return self._pods.pop(name, None)

    def add(self, pod: PodInfo, res: Resolution) -> None:
        self._pods[pod.name] = PodTarget(
            pod.uid,
            pod.restart_count,
            res.target,
            res.port,
            pod.memory_limit_for_port(res.port),
            pod.started_at_for_port(res.port),
        )

    def update(self, pod: PodInfo, res: Resolution) -> None:
        state = self._pods.get(pod.name)
        if state is None:
            self.add(pod, res)
            return
        state.uid, state.restart_count = pod.uid, pod.restart_count
        state.target, state.port, state.limit_bytes, state.started_at = (
            res.target,
            res.port,
            pod.memory_limit_for_port(res.port),
            pod.started_at_for_port(res.port),
        )

    def restart_reason(self, pod: PodInfo) -> str | None:
        """Why `pod` runs a different process than the one known under its name, or None."""
        state = self._pods.get(pod.name)
        if state is None:
            return None
        if pod.uid and state.uid and pod.uid != state.uid:
            return "the pod was replaced by one with the same name (new UID)"
        if pod.restart_count > state.restart_count:
            return f"a container restarted (restartCount {state.restart_count} -> {pod.restart_count})"
        return None

    def sample_ok(self, name: str, time: float) -> None:
        state = self._pods.get(name)
        if state is not None:
            state.last_ok, state.error, state.error_reason = time, None, None

    def scrape_failed(self, name: str, error: str, reason: str) -> None:
        state = self._pods.get(name)
        if state is not None:
            state.error, state.error_reason = error, reason

    def scrape_errors(self) -> tuple[ScrapeError, ...]:
        return tuple(
            ScrapeError(name, s.error_reason or "ScrapeFailed", s.error)
            for name, s in sorted(self._pods.items())
            if s.error
        )
