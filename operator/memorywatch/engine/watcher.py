"""The per-target loop: sample on an interval, judge, capture on a breach; many targets on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from memorywatch.engine import schedule
from memorywatch.engine.capture import Baseline, CaptureRequest, capture, take_baseline
from memorywatch.engine.events import (
    BreachEvent,
    CaptureEvent,
    CaptureFailedEvent,
    Event,
    FaultEvent,
    NoteEvent,
    SampleEvent,
    ScrapeFailedEvent,
)
from memorywatch.engine.window import SampleWindow
from memorywatch.rules.base import RuleStatus
from memorywatch.rules.engine import Judgement, TargetJudge
from memorywatch.rules.model import RuleKind, RuleSpec
from memorywatch.rules.threshold import OVER_BUDGET
from memorywatch.samples import Sample
from memorywatch.scrape import ScrapeError, Scraper, TargetConfig
from memorywatch.store import CaptureStore, StoreError

log = logging.getLogger(__name__)

RECENT_SAMPLES = 240
# Supervision: a task that fails unexpectedly is retried after min(interval * 2^(n-1), MAX_BACKOFF_SECONDS).
MAX_BACKOFF_SECONDS = 300.0
CAPTURE_RETRIES = 2  # a capture that fails unexpectedly is tried this many more times before giving up
_FAULT_MESSAGE_CHARS = 300
SPECIFICITY = (
    RuleKind.FINALIZER_BACKLOG,
    RuleKind.GOROUTINE_GROWTH,
    RuleKind.NON_HEAP_GROWTH,
    RuleKind.HEAP_GROWTH,
    RuleKind.MEMORY_LIMIT,
    RuleKind.THRESHOLD,
)  # enough for the manifest's MemStats series; bounded per target


@dataclasses.dataclass(frozen=True)
class WatchSettings:
    """How one watch behaves. Times are seconds."""

    interval_seconds: float = 15.0
    duration_seconds: float | None = None
    profiles: Sequence[str] = ("heap", "goroutine", "goroutine-stacks")
    cooldown_seconds: float = 1800.0
    exit_on_breach: bool = False
    namespace: str = "local"
    memorywatch: str = "watch"
    limit_bytes: int | None = None
    cpu_seconds: int = 10


@dataclasses.dataclass
class _TargetState:
    key: str
    pod: str
    target: TargetConfig
    judge: TargetJudge
    recent: SampleWindow
    baseline: Baseline | None = None
    baseline_task: asyncio.Task[Baseline] | None = None
    capture_task: asyncio.Task[None] | None = None
    loop_task: asyncio.Task[None] | None = None
    failures: int = 0
    limit_bytes: int | None = None
    started_at: float | None = None  # when the target's process started, if its owner knows (a pod's status)
    baseline_faults: int = 0
    baseline_retry_at: float = 0.0  # monotonic time before which a failed baseline is not retried
    rule_faults: int = 0
    loop_faults: int = 0


class Watcher:
    """Watches a changing set of targets until the duration ends, `stop()` is called, or (with exit_on_breach)
    a capture lands. Each target has its own loop on the one event loop; `add_target`/`remove_target` may be
    called at any time (the operator follows pod churn this way)."""

    def __init__(
        self,
        rules: Sequence[RuleSpec],
        store: CaptureStore,
        scraper: Scraper,
        settings: WatchSettings,
        on_event: Callable[[Event], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = tuple(rules)
        self._settings = settings
        self._store = store
        self._scraper = scraper
        self._emit = on_event
        self._clock = clock
        self._stop = asyncio.Event()
        self._running = False
        self.breach_captured = False
        self._states: dict[str, _TargetState] = {}
        self._orphan_captures: set[asyncio.Task[None]] = set()
        self._finish_captures = True

    @property
    def settings(self) -> WatchSettings:
        return self._settings

    def target_keys(self) -> list[str]:
        return list(self._states)

    def add_target(
        self,
        key: str,
        target: TargetConfig,
        *,
        pod: str | None = None,
        cooldowns: Mapping[str, float] | None = None,
        limit_bytes: int | None = None,
        started_at: float | None = None,
    ) -> None:
        """Start watching `target` under `key` (a pod name, or the URL locally); restore saved cooldowns.
        `limit_bytes` is this target's memory limit (a container's), else the watch's own setting;
        `started_at` when its process started, if known (a container's startedAt), unless a sample says."""
        if key in self._states:
            return
        judge = TargetJudge(self._rules, default_cooldown_seconds=self._settings.cooldown_seconds)
        if cooldowns:
            judge.restore_cooldowns(cooldowns)
        state = _TargetState(
            key=key,
            pod=pod or target.name or f"{target.host}_{target.port}",
            target=target,
            judge=judge,
            recent=SampleWindow(RECENT_SAMPLES),
            limit_bytes=limit_bytes,
            started_at=started_at,
        )
        self._states[key] = state
        if self._running:
            self._start_loop(state)

    def remove_target(self, key: str) -> None:
        """Stop watching `key`. A capture under way still completes: evidence is never dropped."""
        state = self._states.pop(key, None)
        if state is None:
            return
        for task in (state.loop_task, state.baseline_task):
            if task is not None and not task.done():
                task.cancel()
        if state.capture_task is not None and not state.capture_task.done():
            self._orphan_captures.add(state.capture_task)
            state.capture_task.add_done_callback(self._orphan_captures.discard)

    def rule_states(self, key: str) -> Mapping[str, RuleStatus]:
        """Each rule's state for `key` as values (state, growth, judged window), in config order."""
        state = self._states.get(key)
        return state.judge.rule_states() if state else {}

    def update_rules(self, rules: Sequence[RuleSpec]) -> None:
        """Judge every target with a new rule set from now on. Rules whose spec did not change keep their series
        and cooldowns (TargetJudge.update_rules); samples, baselines and captures under way are untouched."""
        self._rules = tuple(rules)
        for state in self._states.values():
            state.judge.update_rules(self._rules)

    def update_target(
        self,
        key: str,
        target: TargetConfig,
        *,
        limit_bytes: int | None = None,
        started_at: float | None = None,
    ) -> None:
        """Swap how `key` is reached (a new token, CA, or port-forward address) in place: the next scrape uses
        `target`, and its series, baseline and cooldowns stay. Unknown keys are ignored."""
        state = self._states.get(key)
        if state is None:
            return
        state.target = target
        state.limit_bytes = limit_bytes
        state.started_at = started_at

    def restart_target(self, key: str, reason: str) -> None:
        """The process behind `key` is a new one (the pod's UID or a container's restartCount changed): its
        series and baseline start again; cooldowns stay, so the same breach is not captured twice."""
        state = self._states.get(key)
        if state is None:
            return
        cooldowns = state.judge.cooldowns()
        state.judge = TargetJudge(self._rules, default_cooldown_seconds=self._settings.cooldown_seconds)
        state.judge.restore_cooldowns(cooldowns)
        state.recent.clear()
        if state.baseline_task is not None and not state.baseline_task.done():
            state.baseline_task.cancel()
        state.baseline = None
        state.baseline_task = None
        self._emit(NoteEvent(key, self._clock(), f"the target restarted ({reason}); trends start again"))

    def update_settings(self, settings: WatchSettings, store: CaptureStore | None = None) -> None:
        """Take new capture settings (profiles, cooldown, CPU seconds) and, when given, a new store, for the
        captures that start from now on. The interval is read by running loops only when they start: a new
        interval needs a new Watcher."""
        self._settings = settings
        if store is not None:
            self._store = store
        for state in self._states.values():
            state.judge.default_cooldown_seconds = settings.cooldown_seconds

    def cooldowns(self, key: str) -> dict[str, float]:
        state = self._states.get(key)
        return state.judge.cooldowns() if state else {}

    def rule_status(self, key: str) -> Mapping[str, str]:
        state = self._states.get(key)
        return state.judge.status() if state else {}

    def capturing(self) -> bool:
        live = any(s.capture_task is not None and not s.capture_task.done() for s in self._states.values())
        return live or bool(self._orphan_captures)

    def stop(self, *, finish_captures: bool = True) -> None:
        """End run(). A capture under way is finished first, unless `finish_captures` is False (the watch was
        deleted: nobody waits for its evidence, and its release must not wait for a profile download)."""
        self._finish_captures = self._finish_captures and finish_captures
        self._stop.set()

    async def run(self) -> None:
        self._running = True
        for state in self._states.values():
            if state.loop_task is None:
                self._start_loop(state)
        try:
            if self._settings.duration_seconds is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self._settings.duration_seconds)
            else:
                await self._stop.wait()
        finally:
            self._running = False
            states = list(self._states.values())
            loops = [s.loop_task for s in states if s.loop_task is not None]
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            # A capture under way is finished, not abandoned: evidence is never lost to a shutdown.
            pending = [s.capture_task for s in states if s.capture_task and not s.capture_task.done()]
            pending += list(self._orphan_captures)
            if not self._finish_captures:
                for task in pending:
                    task.cancel()  # its folder has no manifest.json: the partial sweep removes it
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            for s in states:
                if s.baseline_task and not s.baseline_task.done():
                    s.baseline_task.cancel()

    def _start_loop(self, state: _TargetState) -> None:
        task = asyncio.create_task(self._loop(state), name=f"watch {state.key}")
        state.loop_task = task
        task.add_done_callback(lambda t: self._loop_ended(state, t))

    def _loop_ended(self, state: _TargetState, task: asyncio.Task[None]) -> None:
        """The last line of supervision: a loop that ended by itself (not cancelled, not stopped) while its
        target is still watched is reported and started again, so no target silently stops being sampled."""
        if task.cancelled() or self._stop.is_set() or not self._running:
            return
        if self._states.get(state.key) is not state or state.loop_task is not task:
            return
        error = task.exception()
        state.loop_faults += 1
        retry = self._backoff(state.loop_faults)
        self._fault(state.key, "loop", error or RuntimeError("the loop returned"), retry)

        async def restart() -> None:
            await asyncio.sleep(retry)
            current = asyncio.current_task()
            if self._running and self._states.get(state.key) is state and state.loop_task is current:
                self._start_loop(state)

        state.loop_task = asyncio.create_task(restart(), name=f"restart {state.key}")

    def _backoff(self, faults: int) -> float:
        return float(min(self._settings.interval_seconds * 2 ** max(0, faults - 1), MAX_BACKOFF_SECONDS))

    def _send(self, event: Event) -> None:
        """Hand an event to the consumer; a consumer that raises must not end a target's loop."""
        try:
            self._emit(event)
        except Exception:
            log.exception("the event consumer failed on a %s for %s", type(event).__name__, event.target)

    def _fault(self, key: str, component: str, error: BaseException, retry_seconds: float | None) -> None:
        message = " ".join(f"{type(error).__name__}: {error}".split())[:_FAULT_MESSAGE_CHARS]
        log.warning("%s: %s failed (%s); retry in %s s", key, component, message, retry_seconds)
        self._send(FaultEvent(key, self._clock(), component, type(error).__name__, message, retry_seconds))

    async def _loop(self, state: _TargetState) -> None:
        interval = self._settings.interval_seconds
        # Spread many targets over the interval instead of sampling them all at once (schedule.py).
        delay = schedule.first_sample_delay(state.key, interval, len(self._states))
        next_at = time.monotonic() + delay
        if delay > 0:
            await asyncio.sleep(delay)
        while not self._stop.is_set():
            try:
                await self._tick(state)
            except Exception as error:  # noqa: BLE001 - supervision: report, back off, keep sampling
                state.loop_faults += 1
                retry = self._backoff(state.loop_faults)
                self._fault(state.key, "loop", error, retry)
                await asyncio.sleep(retry)
                next_at = time.monotonic()
                continue
            state.loop_faults = 0
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow scrape: skip missed ticks instead of bursting to catch up
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    async def _tick(self, state: _TargetState) -> None:
        name = state.key
        started = time.monotonic()
        try:
            sample = await self._scraper.sample(state.target, probes=state.judge.wants(), now=self._clock)
        except ScrapeError as e:
            state.failures += 1
            # Aggregated: the first failure, then every tenth, so a dead target does not flood the output.
            if state.failures == 1 or state.failures % 10 == 0:
                took = time.monotonic() - started
                self._send(
                    ScrapeFailedEvent(name, self._clock(), str(e), type(e).__name__, state.failures, took)
                )
            return
        took = time.monotonic() - started
        if state.failures:
            self._send(NoteEvent(name, sample.time, f"scrapes recovered after {state.failures} failure(s)"))
            state.failures = 0
        limit = state.limit_bytes if state.limit_bytes is not None else self._settings.limit_bytes
        if limit is not None and sample.limit_bytes is None:
            sample = dataclasses.replace(sample, limit_bytes=limit)
        if state.started_at is not None and sample.process_started_at is None:
            sample = dataclasses.replace(sample, process_started_at=state.started_at)
        judgement = self._judge(state, sample)
        if judgement.restarted:
            self._send(
                NoteEvent(
                    name, sample.time, "the target restarted (its counters went back); trends start again"
                )
            )
            state.recent.clear()
            state.baseline = None
            state.baseline_task = None
        # The window keeps what manifests use, as columns (window.py); the stacks stay with the judge.
        state.recent.append(sample)
        self._ensure_baseline(state, sample.time)
        self._send(SampleEvent(name, sample, state.judge.status(), took))
        if not judgement.breaches:
            return
        for breach in judgement.breaches:
            self._send(BreachEvent(name, breach))
        # The most specific verdict names the capture: a blocked finalizer explains the heap growth it causes.
        breaches = sorted(judgement.breaches, key=lambda b: SPECIFICITY.index(b.kind))
        if state.capture_task and not state.capture_task.done():
            self._send(
                NoteEvent(
                    name,
                    sample.time,
                    "a capture is already under way; this breach is recorded in events only",
                )
            )
            return
        req = CaptureRequest(
            namespace=self._settings.namespace,
            memorywatch=self._settings.memorywatch,
            pod=state.pod,
            target=state.target,
            breaches=breaches,
            profiles=self._settings.profiles,
            recent=state.recent.samples(),
            baseline=state.baseline,
            cpu_seconds=self._settings.cpu_seconds,
        )
        state.capture_task = asyncio.create_task(self._capture(name, req))

    def _judge(self, state: _TargetState, sample: Sample) -> Judgement:
        """The judge's verdict on one sample. A rule that raises is a fault of that rule, reported (first
        time, then every tenth in a row) without ending the loop; the sample is still recorded."""
        try:
            judgement = state.judge.observe(sample)
        except Exception as error:  # noqa: BLE001
            state.rule_faults += 1
            if state.rule_faults == 1 or state.rule_faults % 10 == 0:
                rule = _failing_rule(error.__traceback__)
                component = f"rule:{rule}" if rule else "rules"
                self._fault(state.key, component, error, self._settings.interval_seconds)
            return Judgement()
        state.rule_faults = 0
        for note in judgement.notes:
            rule, _, text = note.partition(": ")
            if text.startswith(OVER_BUDGET):
                self._send(
                    FaultEvent(state.key, sample.time, f"rule:{rule}", "CelBudgetError", text[:300], None)
                )
        return judgement

    def _ensure_baseline(self, state: _TargetState, now: float) -> None:
        if state.baseline is not None:
            return
        task = state.baseline_task
        if task is None:
            if time.monotonic() < state.baseline_retry_at:
                return
            limit = self._scraper.limits.max_baseline_bytes
            state.baseline_task = asyncio.create_task(
                take_baseline(self._scraper, state.target, now, max_bytes=limit)
            )
        elif task.done():
            state.baseline_task = None
            if task.cancelled():
                return
            error = task.exception()
            if error is None:
                state.baseline = task.result()
                state.baseline_faults = 0
                return
            state.baseline_faults += 1
            retry = self._backoff(state.baseline_faults)
            state.baseline_retry_at = time.monotonic() + retry
            self._fault(state.key, "baseline", error, retry)

    async def _capture(self, name: str, req: CaptureRequest) -> None:
        rule = req.breaches[0].rule
        for attempt in range(CAPTURE_RETRIES + 1):
            now = self._clock()
            try:
                result = await capture(self._scraper, self._store, req, now)
            except StoreError as e:
                self._send(CaptureFailedEvent(name, now, rule, str(e), kind=type(e).__name__))
                return
            except Exception as error:  # noqa: BLE001 - supervision: a capture that fails unexpectedly is tried again
                last = attempt == CAPTURE_RETRIES
                retry = None if last else self._backoff(attempt + 1)
                self._fault(name, "capture", error, retry)
                if last:
                    self._send(CaptureFailedEvent(name, now, rule, f"{type(error).__name__}: {error}"[:300]))
                    return
                await asyncio.sleep(retry or 0.0)
                continue
            self._send(
                CaptureEvent(
                    name,
                    now,
                    rule,
                    result.location,
                    result.files,
                    result.summary,
                    result.errors,
                    manifest=result.manifest,
                )
            )
            if self._settings.exit_on_breach:
                self.breach_captured = True
                self._stop.set()
            return


def _failing_rule(tb: TracebackType | None) -> str | None:
    """The name of the rule whose code raised, found on the traceback (the innermost Rule `self`)."""
    name = None
    for frame, _ in traceback.walk_tb(tb):
        owner = frame.f_locals.get("self")
        spec = getattr(owner, "spec", None)
        if spec is not None and hasattr(owner, "observe") and isinstance(getattr(spec, "name", None), str):
            name = spec.name
    return name
