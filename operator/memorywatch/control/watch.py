"""One MemoryWatch, reconciled level-based: follow the selected pods, run the engine on them, write status and
events, capture, act. Idempotent across operator restarts: cooldowns live in status and are written before the
work they guard. Every task is supervised (`supervise`): a failure is a Degraded condition and a Warning event,
never a silently dead loop. A target keeps its series across transient Secret and port-forward failures and
across spec edits that leave its rules, interval and endpoint alone."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from memorywatch import metrics
from memorywatch.actions import ActionRunner
from memorywatch.api.capture_object import Owner
from memorywatch.api.spec import SpecError, WatchSpec, parse_spec
from memorywatch.control.acting import ActionExecutor, ActionLog, Cooldowns
from memorywatch.control.capture_records import CaptureRecords
from memorywatch.control.events import EventHandler
from memorywatch.control.faults import Fault, FaultBook
from memorywatch.control.handover import Handover, share_cooldowns
from memorywatch.control.notifying import Sender, WatchNotifications
from memorywatch.control.ports import ForwardCloser, Forwarder, KubeApi, Sleep
from memorywatch.control.posting import EventPoster, FaultReporter
from memorywatch.control.queue import DEFAULT_MAX_EVENTS, EventQueue
from memorywatch.control.release import being_deleted, forget_events
from memorywatch.control.resolve import Resolution, TargetResolver
from memorywatch.control.secrets import SecretCache
from memorywatch.control.shard_status import ShardStatus
from memorywatch.control.sharding import ShardView, owner, pod_key
from memorywatch.control.shards import render_share
from memorywatch.control.status import (
    Condition,
    WatchFacts,
    breaching_pods,
    comparable,
    derive_conditions,
    merge_cooldowns,
    parse_iso,
    render_status,
    targets_resolved,
)
from memorywatch.control.stores import StoreFactory, StoreState, open_store
from memorywatch.control.supervise import Backoff, Supervisor, TaskFault, describe
from memorywatch.control.targets import TargetBook
from memorywatch.engine.events import Event
from memorywatch.engine.watcher import Watcher, WatchSettings
from memorywatch.k8s import KubeError
from memorywatch.scrape import Scraper
from memorywatch.store import CaptureStore
from memorywatch.targets import PodInfo

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 5.0
#: How long an exiting operator records the engine's last events (statuses, Events, actions) before dropping them.
DRAIN_SECONDS = 20.0
DEFAULT_BACKOFF = Backoff()
MAX_STATUS_CAPTURES = 5  # the newest few; the full record of every capture is its MemoryCapture


class ControlError(Exception):
    """The root of the controller's own errors."""


class ControllerFailed(ControlError):
    """The controller cannot go on (a critical task keeps failing): the kopf daemon fails, kopf restarts it."""

    @classmethod
    def of(cls, namespace: str, name: str, f: TaskFault) -> ControllerFailed:
        return cls(
            f"MemoryWatch {namespace}/{name}: task {f.task} failed {f.consecutive} times in a row "
            f"({f.cause}: {f.message}); restarting the controller"
        )


class Stopped(Protocol):
    """kopf's DaemonStopped, as far as the controller uses it."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


class WatchController:
    """Runs one MemoryWatch until `stopped` is set. Create one per MemoryWatch (a kopf daemon does)."""

    def __init__(
        self,
        *,
        kube: KubeApi,
        scraper: Scraper,
        make_store: StoreFactory,
        actions: ActionRunner,
        namespace: str,
        name: str,
        uid: str,
        forward: Forwarder,
        close_forward: ForwardCloser,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff = DEFAULT_BACKOFF,
        max_events: int = DEFAULT_MAX_EVENTS,
        reconcile_seconds: float = RECONCILE_SECONDS,
        notifier: Sender | None = None,
        shard: Callable[[], ShardView] | None = None,
        handover_grace_seconds: float = 0.0,
    ) -> None:
        self.kube = kube
        #: With sharding on, this replica's current view (control/membership.py); None: this replica is alone.
        self.shard = shard
        #: With sharding on, new pods learn their capture cooldowns from the cluster first (control/handover.py).
        self.handover = (
            Handover(kube, namespace, uid, clock, grace_seconds=handover_grace_seconds)
            if shard is not None
            else None
        )
        self._last_view: ShardView | None = None
        #: With sharding on, status is this replica's share plus, from one replica, the summary (control/shards.py).
        self.shard_status = ShardStatus(kube, namespace, name, shard, clock) if shard is not None else None
        self.scraper = scraper
        self.make_store = make_store
        self.namespace = namespace
        self.name = name
        self.clock = clock
        self.reconcile_seconds = reconcile_seconds
        self.drain_seconds = DRAIN_SECONDS
        self.watcher: Watcher | None = None
        self._watcher_task: asyncio.Task[None] | None = None
        self.spec: WatchSpec | None = None
        self.generation = 0
        self.store = StoreState()
        self.cooldowns: Cooldowns = {}
        self.captures: list[dict[str, Any]] = []
        self.conditions: dict[str, Condition] = {}
        self.queue = EventQueue(max_events)
        self.faults = FaultBook()
        self.poster = EventPoster(kube, namespace, name, uid, clock)
        self.reporter = FaultReporter(self.faults, self.poster)
        self.supervisor = Supervisor(
            on_fault=self._on_task_fault, on_recovered=self._on_task_recovered, backoff=backoff, sleep=sleep
        )
        self.secrets = SecretCache(kube, clock)
        self.resolver = TargetResolver(namespace, self.secrets, forward, close_forward)
        self.pods = TargetBook()
        self.executor = ActionExecutor(
            actions, self.poster, namespace, self.cooldowns, ActionLog(), self._write_ahead, clock
        )
        self.executor.watch_uid = uid
        self.executor.pod_uid = self.pod_uid
        self.notifications = WatchNotifications(notifier, self.poster, self.secrets, namespace, name, clock)
        self.records = CaptureRecords(kube, self.poster, Owner(namespace, name, uid), clock)
        self.events = EventHandler(self)
        self.executor.on_outcome = self.events.action_done
        self._facts = WatchFacts(generation=0)
        self._last_status: dict[str, Any] | None = None
        self._leak: str | None = None
        self._counted_targets = 0

    def pod_uid(self, pod: str) -> str | None:
        """The uid of the pod profiled under `pod`: the runner acts only on that very pod."""
        known = self.pods.get(pod)
        return known.uid if known is not None else None

    # ---------------------------------------------------------------- lifecycle

    def restore(self, status: Mapping[str, Any]) -> None:
        """Take back what a previous operator process wrote: captures, actions, cooldowns, conditions. With
        sharding on, only this replica's own share (status.shards.<member>) is its to take back."""
        if self.shard is not None:
            shards = status.get("shards")
            mine = shards.get(self.shard().me) if isinstance(shards, Mapping) else None
            status = {k: v for k, v in mine.items() if k != "conditions"} if isinstance(mine, Mapping) else {}
        self.captures = [dict(c) for c in status.get("captures") or []][:MAX_STATUS_CAPTURES]
        self.executor.log = ActionLog([dict(a) for a in status.get("lastActions") or []])
        for c in status.get("cooldowns") or []:
            until = parse_iso(str(c.get("until", "")))
            if until is not None:
                key = (str(c.get("pod", "")), str(c.get("rule", "")), str(c.get("type", "Capture")))
                self.cooldowns[key] = until
        for cond in status.get("conditions") or []:
            self.conditions[str(cond.get("type"))] = Condition.from_dict(cond)

    async def run(
        self,
        get_body: Callable[[], Mapping[str, Any]],
        get_pods: Callable[[], Iterable[PodInfo]],
        stopped: Stopped,
    ) -> None:
        if self.shard_status is not None:
            self.shard_status.get_body = get_body
        self.supervisor.spawn("events", self._consume_events)
        metrics.register_watch(self.namespace, self.name)
        try:
            while not stopped:
                if self.supervisor.failure is not None:
                    raise ControllerFailed.of(self.namespace, self.name, self.supervisor.failure)
                delay = await self.supervisor.attempt(
                    "reconcile", lambda: self.reconcile(get_body(), list(get_pods())), critical=True
                )
                await self.supervisor.attempt("captures", self._sweep_captures)
                interval = self.spec.interval_seconds if self.spec else self.reconcile_seconds
                await stopped.wait(max(delay, min(self.reconcile_seconds, interval)))
        finally:
            metrics.TARGETS.dec(self._counted_targets)
            self._counted_targets = 0
            metrics.forget_watch(self.namespace, self.name)
            try:
                deleted = being_deleted(get_body())
            except Exception:  # noqa: BLE001 - a body that cannot be read: stop as for an exiting operator
                deleted = False
            try:
                if deleted:
                    await self._release()
                else:
                    await self._stop_watcher()
                    await self._drain_events()
            finally:
                # Also when kopf cancels the daemon half-way through the above: no task outlives the watch.
                await self.supervisor.close()
                await self.reporter.close(cancel=deleted)
                await self.notifications.close()
                self.resolver.cleanup()

    async def _sweep_captures(self) -> None:
        """MemoryCaptures still to create, and those whose files retention pruned (control/capture_records)."""
        created, _ = await self.records.sweep(self.store.store)
        for entry in self.captures:
            if entry.get("memoryCapture") in created:
                entry.pop("memoryCaptureError", None)
        if created:
            await self.write_status(force=True)

    async def _release(self) -> None:
        """The watch is being deleted and its finalizer waits for this: stop without acting or writing
        (control/release.py)."""
        await self.supervisor.close()  # the event consumer, and an action it may be about to take
        await self._stop_watcher(finish_captures=False)
        dropped = forget_events(self.queue, self.namespace, self.name)
        log.info(
            "%s/%s is being deleted: stopped (%d pending events dropped)", self.namespace, self.name, dropped
        )

    async def _stop_watcher(self, *, finish_captures: bool = True) -> None:
        """Stop the engine; a capture under way completes first (Watcher.run waits for it) unless the watch is
        being deleted."""
        if self.watcher is not None:
            self.watcher.stop(finish_captures=finish_captures)
        if self._watcher_task is not None:
            await asyncio.gather(self._watcher_task, return_exceptions=True)
        self.watcher = None
        self._watcher_task = None

    # ---------------------------------------------------------------- reconcile

    async def reconcile(self, body: Mapping[str, Any], pods: list[PodInfo]) -> None:
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError as e:
            await self._stop_watcher()
            self._forget_all_targets()
            await self._publish(WatchFacts(generation, spec_errors=tuple(e.messages)))
            return
        await self._check_engine()
        await self._apply_spec(spec, generation)
        watcher = self.watcher
        assert watcher is not None
        if spec.suspend:
            self._forget_all_targets()
            await self._publish(WatchFacts(generation, suspended=True))
            return
        selected = [p for p in pods if p.namespace == self.namespace and spec.selector.matches(p.labels)]
        running = {p.name: p for p in selected if p.running}
        for key in [k for k in self.pods.names() if k not in running]:
            await self._drop(key)
        problems: list[str] = []
        causes: set[str] = set()
        learned = await self._learn_cooldowns(spec, [n for n in running if n not in self.pods])
        for pod in running.values():
            if learned is not None and pod.name not in self.pods and pod.name not in learned:
                continue  # its recent captures could not be read yet: not followed, so not captured
            res = await self._resolve(spec, pod)
            if res.transient and res.problem:
                # The API server or the port-forward failing for a while: Degraded, and a watched target is kept.
                retry = self.secrets.retry_seconds
                self.report_fault(
                    Fault(pod.name, "resolve", res.cause or "ResolveFailed", res.problem, self.clock(), retry)
                )
                if pod.name not in self.pods:
                    problems.append(res.problem)
            elif res.problem:
                problems.append(res.problem)
                causes.add(res.cause or "")
            else:
                self.faults.recovered(pod.name, "resolve")
            if res.target is None:
                if pod.name in self.pods and not res.transient:
                    await self._drop(pod.name)
                continue  # transient: an already-watched target keeps its series, unresolved for now
            state = self.pods.get(pod.name)
            if state is None:
                cooldowns = {
                    r: t for (p, r, k), t in self.cooldowns.items() if p == pod.name and k == "Capture"
                }
                for rule, until in (learned or {}).get(pod.name, {}).items():
                    cooldowns[rule] = max(until, cooldowns.get(rule, 0.0))
                watcher.add_target(
                    pod.name,
                    res.target,
                    pod=pod.name,
                    cooldowns=cooldowns,
                    limit_bytes=pod.memory_limit_for_port(res.port),
                    started_at=pod.started_at_for_port(res.port),
                )
                self.pods.add(pod, res)
                continue
            restarted = self.pods.restart_reason(pod)
            if restarted is not None:
                watcher.restart_target(pod.name, restarted)
            limit, started = pod.memory_limit_for_port(res.port), pod.started_at_for_port(res.port)
            if state.target != res.target or (state.limit_bytes, state.started_at) != (limit, started):
                watcher.update_target(pod.name, res.target, limit_bytes=limit, started_at=started)
            self.pods.update(pod, res)
        await self._publish(
            WatchFacts(
                generation,
                targets=len(self.pods),
                selected=len(selected),
                running=len(running),
                resolution=targets_resolved(
                    self.namespace, spec.selector.describe(), len(selected), len(running), problems, causes
                ),
            )
        )

    async def _learn_cooldowns(self, spec: WatchSpec, new: list[str]) -> dict[str, dict[str, float]] | None:
        """With sharding on: which of the `new` pods may be followed now, with the cooldowns of the captures any
        replica took of them (one MemoryCapture list for the batch). None: sharding off, follow them all."""
        if self.handover is None or self.shard is None:
            return None
        view = self.shard()
        last, self._last_view = self._last_view, view
        if not new:
            return {}
        others = view.members - {view.me}
        moving = []
        for name in new:
            # Its owner before: under the last view, or before this controller started, the others' owner.
            before = (
                last.owner(self.namespace, name)
                if last is not None
                else owner(others, pod_key(self.namespace, name))
            )
            if before is not None and before != view.me and before in view.members:
                moving.append(name)
        learned = await self.handover.learn(spec, new, moving)
        status = self.shard_status.status() if self.shard_status is not None else {}
        for pod, rules in share_cooldowns(status, learned, self.clock()).items():
            for rule, until in rules.items():
                learned[pod][rule] = max(until, learned[pod].get(rule, 0.0))
        return learned

    async def _resolve(self, spec: WatchSpec, pod: PodInfo) -> Resolution:
        """Resolve one pod; an unexpected failure is that pod's problem (a fault), never the whole reconcile's."""
        try:
            return await self.resolver.resolve(spec, pod)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            cause, message = describe(e)
            log.warning("%s/%s: resolving pod %s failed", self.namespace, self.name, pod.name, exc_info=e)
            return Resolution(
                pod.name, None, problem=f"pod {pod.name}: {message}", transient=True, cause=cause
            )

    async def _drop(self, key: str) -> None:
        if self.watcher is not None:
            self.watcher.remove_target(key)
        gone = self.pods.pop(key)
        self.faults.forget_target(key)
        if gone is not None:
            await self.resolver.release(self.spec, key, gone.port)

    def _forget_all_targets(self) -> None:
        for key in self.pods.names():
            if self.watcher is not None:
                self.watcher.remove_target(key)
            self.pods.pop(key)

    async def _apply_spec(self, spec: WatchSpec, generation: int) -> None:
        """Take a new spec with as little loss as it allows: only a new interval (or a dead engine) starts a new
        Watcher; rules, capture settings and the store are swapped in the running one; everything else
        (selector, endpoint, action, dryRun) is read where it is used."""
        old = self.spec
        self.spec, self.generation = spec, generation
        if self.watcher is None or old is None or old.interval_seconds != spec.interval_seconds:
            await self._start_watcher(spec)
            return
        if old.rules != spec.rules:
            self.watcher.update_rules(spec.rules)
        if old.capture != spec.capture:
            store = await self._make_store(spec) if old.capture.s3 != spec.capture.s3 else None
            self.watcher.update_settings(self._settings(spec), store)

    def _settings(self, spec: WatchSpec) -> WatchSettings:
        return WatchSettings(
            interval_seconds=spec.interval_seconds,
            profiles=spec.capture.profiles,
            cooldown_seconds=spec.capture.cooldown_seconds,
            namespace=self.namespace,
            memorywatch=self.name,
            cpu_seconds=spec.capture.cpu_seconds,
        )

    async def _make_store(self, spec: WatchSpec) -> CaptureStore:
        self.store = await open_store(self.make_store, spec, self.namespace)
        return self.store.for_engine()

    async def _start_watcher(self, spec: WatchSpec) -> None:
        await self._stop_watcher()
        self._forget_all_targets()
        store = await self._make_store(spec)
        self.faults.quiet_seconds = max(15.0, 3 * spec.interval_seconds)
        self.watcher = Watcher(
            spec.rules, store, self.scraper, self._settings(spec), self.queue.put_nowait, clock=self.clock
        )
        self._watcher_task = asyncio.create_task(
            self.watcher.run(), name=f"watcher {self.namespace}/{self.name}"
        )

    async def _check_engine(self) -> None:
        """The engine's run() ends only when stopped: if it ended by itself, report it and start a new one."""
        task = self._watcher_task
        if task is None or not task.done():
            return
        error = task.exception() if not task.cancelled() else None

        async def died() -> None:
            raise error or RuntimeError("the engine stopped by itself")

        await self.supervisor.attempt("engine", died, critical=True)
        self.watcher, self._watcher_task = None, None  # _apply_spec starts a new one

    # ---------------------------------------------------------------- events and faults

    async def _consume_events(self) -> None:
        while True:
            await self._handle(await self.queue.get())

    async def _drain_events(self) -> None:
        """Record what the engine reported before it stopped, for at most `drain_seconds`; then drop the rest
        (a finished capture is logged), so an exiting operator's stop stays bounded however much was queued."""
        deadline = time.monotonic() + self.drain_seconds
        while time.monotonic() < deadline and (event := self.queue.get_nowait()) is not None:
            await self._handle(event)
        if dropped := forget_events(self.queue, self.namespace, self.name):
            log.warning("%s/%s: %d events not recorded within %gs of stopping", self.namespace, self.name,
                        dropped, self.drain_seconds)  # fmt: skip

    async def _handle(self, event: Event) -> None:
        """One engine event; a failure is that target's fault, and the consumer goes on with the next."""
        await self.supervisor.attempt("events", lambda: self.events.handle(event), target=event.target)

    def report_fault(self, fault: Fault) -> None:
        """Record a fault (Degraded) and post its Warning event (rate-limited) in the background."""
        self.reporter.report(fault)

    def _on_task_fault(self, f: TaskFault) -> None:
        self.report_fault(Fault(f.target, f.task, f.cause, f.message, self.clock(), f.retry_seconds))

    def _on_task_recovered(self, task: str, target: str) -> None:
        self.faults.recovered(target, task)

    def note_leak(self, message: str) -> None:
        self._leak = message

    # ---------------------------------------------------------------- status

    async def _publish(self, facts: WatchFacts) -> None:
        metrics.TARGETS.inc(len(self.pods) - self._counted_targets)
        self._counted_targets = len(self.pods)
        self._facts = facts
        labels = (self.namespace, self.name)
        metrics.WATCH_TARGETS.labels(*labels).set(facts.targets)
        metrics.WATCH_TARGETS_FAILING.labels(*labels).set(len(facts.scrape_errors))
        metrics.WATCH_STORE_AVAILABLE.labels(*labels).set(0 if facts.store_error else 1)
        metrics.WATCH_STORE_DEGRADED.labels(*labels).set(1 if facts.store_note else 0)
        await self.write_status()

    async def write_status(self, *, force: bool = False) -> bool:
        """Write status when it changed (or `force`); False when it could not be written. Supervised as the
        `status` task: an unexpected failure is a fault, the API server being away is only logged."""
        written: list[bool] = []

        async def work() -> None:
            written.append(await self._write_status_now(force))

        await self.supervisor.attempt("status", work)
        return bool(written and written[0])

    async def _write_ahead(self) -> None:
        if not await self.write_status(force=True):
            raise StatusNotWritten("the cooldown could not be written to status first; not acting")

    def current_facts(self) -> WatchFacts:
        now = self.clock()
        f = self._facts
        return dataclasses.replace(
            f,
            targets=len(self.pods),
            scrape_errors=self.pods.scrape_errors(),
            store_error=self.store.error,
            store_reason=self.store.reason,
            store_note=self.store.note,
            store_location=self.store.store.location if self.store.store is not None else "?",
            faults=tuple(x.describe() for x in self.faults.active(now)),
            leak=self._leak,
        )

    async def _write_status_now(self, force: bool) -> bool:
        now = self.clock()
        engine = {p: self.watcher.cooldowns(p) for p in self.watcher.target_keys()} if self.watcher else {}
        merge_cooldowns(self.cooldowns, engine, now)
        facts = self.current_facts()
        conditions = derive_conditions(self.conditions, facts, now)
        breaching = breaching_pods(self.cooldowns, self.pods.names(), now)
        if self.shard_status is not None:
            share = render_share(
                facts, breaching=breaching, captures=self.captures, actions=self.executor.log.entries,
                cooldowns=self.cooldowns,
            )  # fmt: skip
            selector = self.spec.selector.describe() if self.spec is not None else ""
            return await self.shard_status.write(share, facts, selector, force)
        status = render_status(
            conditions,
            facts,
            breaching=breaching,
            captures=self.captures,
            actions=self.executor.log.entries,
            cooldowns=self.cooldowns,
        )
        same = comparable(status)
        if not force and same == self._last_status:
            return True
        try:
            await self.kube.patch_status(self.namespace, self.name, status)
        except KubeError as e:
            log.warning("%s/%s: could not write status: %s", self.namespace, self.name, e)
            return False
        self.conditions = conditions
        self._last_status = same
        return True


class StatusNotWritten(ControlError):
    """The cooldown that must precede an action could not be written to status: the action is not taken."""
