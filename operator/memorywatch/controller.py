"""One MemoryWatch, reconciled level-based: follow the selected pods, run the engine on them, write status and
events, capture, act. Idempotent across operator restarts: cooldowns live in status and are written before
the work they guard, so a restarted operator neither captures nor acts twice for the same breach.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from memorywatch import metrics
from memorywatch.actions import ActContext, ActionOutcome, ActionRunner
from memorywatch.actions.guards import RETRYABLE_REASONS
from memorywatch.api.consent import ConsentTarget, secret_problem
from memorywatch.api.spec import SpecError, WatchSpec, parse_spec
from memorywatch.engine.events import (
    BreachEvent,
    CaptureEvent,
    CaptureFailedEvent,
    Event,
    NoteEvent,
    SampleEvent,
    ScrapeFailedEvent,
)
from memorywatch.engine.watcher import Watcher, WatchSettings
from memorywatch.k8s import ForbiddenError, Kube, KubeError, ObjectRef
from memorywatch.scrape import Scraper, TargetConfig, TLSConfig
from memorywatch.store import CaptureStore, StoreError
from memorywatch.targets import PodInfo, pod_url, resolve_port

log = logging.getLogger(__name__)

MAX_STATUS_CAPTURES = 10
MAX_STATUS_ACTIONS = 10
# Skips worth retrying at the next capture; any other skip (at max replicas, no workload, forbidden) keeps the
# action's cooldown, so it is not retried, and reported, on every capture.
# GUARDRAILS CALL SITE 1 (issue 8): passing guard refusals (rate limits, too many unavailable) are retryable too.
RETRYABLE_SKIPS = frozenset({"RolloutInProgress", "DisruptionBudget", "Failed"}) | RETRYABLE_REASONS
RECONCILE_SECONDS = 5.0
KIND = "MemoryWatch"
API_VERSION = "memorywatch.io/v1alpha1"


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


@dataclasses.dataclass
class _PodState:
    last_ok: float | None = None
    error: str | None = None
    error_reason: str | None = None
    last_breach: float | None = None
    target: TargetConfig | None = None
    port: int | None = None
    uid: str | None = None


#: Builds the store a MemoryWatch asked for (its S3 bucket, the default bucket, or the operator's volume).
StoreFactory = Callable[[WatchSpec, str], Awaitable[CaptureStore]]


class WatchController:
    """Runs one MemoryWatch until `stopped` is set. Create one per MemoryWatch (a kopf daemon does)."""

    def __init__(
        self,
        *,
        kube: Kube,
        scraper: Scraper,
        make_store: StoreFactory,
        actions: ActionRunner,
        namespace: str,
        name: str,
        uid: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.scraper = scraper
        self.make_store = make_store
        self.actions = actions
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.clock = clock
        self.watcher: Watcher | None = None
        self._watcher_task: asyncio.Task[None] | None = None
        self._generation: int | None = None
        self._spec: WatchSpec | None = None
        self._store: CaptureStore | None = None
        self._pods: dict[str, _PodState] = {}
        self._captures: list[dict[str, Any]] = []
        self._actions: list[dict[str, Any]] = []
        self._cooldowns: dict[tuple[str, str, str], float] = {}  # (pod-or-workload, rule, type) -> until
        self._conditions: dict[str, dict[str, Any]] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._last_status: dict[str, Any] | None = None
        self._store_error: str | None = None
        self._store_note: str | None = None
        self._targets_problem: tuple[str, str] | None = None
        self._ca_files: dict[str, str] = {}
        self._acting: set[str] = set()
        self._target_count = 0

    # ---------------------------------------------------------------- lifecycle

    def restore(self, status: Mapping[str, Any]) -> None:
        """Take back what a previous operator process wrote: captures, actions, cooldowns, conditions."""
        self._captures = [dict(c) for c in status.get("captures") or []][:MAX_STATUS_CAPTURES]
        self._actions = [dict(a) for a in status.get("lastActions") or []][:MAX_STATUS_ACTIONS]
        for c in status.get("cooldowns") or []:
            until = parse_iso(str(c.get("until", "")))
            if until is not None:
                self._cooldowns[
                    (str(c.get("pod", "")), str(c.get("rule", "")), str(c.get("type", "Capture")))
                ] = until
        for cond in status.get("conditions") or []:
            self._conditions[str(cond.get("type"))] = dict(cond)

    async def run(
        self,
        get_body: Callable[[], Mapping[str, Any]],
        get_pods: Callable[[], Iterable[PodInfo]],
        stopped: Any,
    ) -> None:
        consumer = asyncio.create_task(self._consume_events(), name=f"events {self.namespace}/{self.name}")
        try:
            while not stopped:
                try:
                    await self.reconcile(get_body(), list(get_pods()))
                except KubeError as e:
                    log.warning("%s/%s: reconcile could not reach the API: %s", self.namespace, self.name, e)
                interval = self._spec.interval_seconds if self._spec else RECONCILE_SECONDS
                await stopped.wait(min(RECONCILE_SECONDS, interval))
        finally:
            metrics.TARGETS.dec(self._target_count)
            self._target_count = 0
            await self._stop_watcher()
            await self._drain_events()
            consumer.cancel()
            for path in self._ca_files.values():
                with contextlib.suppress(OSError):
                    os.unlink(path)

    async def _stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self._watcher_task is not None:
            await asyncio.gather(self._watcher_task, return_exceptions=True)
        self.watcher = None
        self._watcher_task = None

    # ---------------------------------------------------------------- reconcile

    async def reconcile(self, body: Mapping[str, Any], pods: list[PodInfo]) -> None:
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 0)
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError as e:
            await self._stop_watcher()
            self._set_condition("Ready", "False", "InvalidSpec", "; ".join(e.messages), generation)
            await self._write_status(generation, targets=0)
            return
        if generation != self._generation or self.watcher is None:
            await self._start_watcher(spec, generation)
        assert self.watcher is not None
        if spec.suspend:
            for key in self.watcher.target_keys():
                self.watcher.remove_target(key)
            self._set_condition(
                "Ready", "False", "Suspended", "spec.suspend is true: nothing is scraped", generation
            )
            await self._write_status(generation, targets=0)
            return

        selected = [p for p in pods if p.namespace == self.namespace and spec.selector.matches(p.labels)]
        running = [p for p in selected if p.running]
        desired: dict[str, TargetConfig] = {}
        problems: list[str] = []
        for pod in running:
            target, problem = await self._target_for(spec, pod)
            if target is not None:
                desired[pod.name] = target
            elif problem:
                problems.append(problem)
        for key in self.watcher.target_keys():
            state = self._pods.get(key)
            if key not in desired or (state is not None and state.target != desired[key]):
                self.watcher.remove_target(key)
                if key not in desired:
                    gone = self._pods.pop(key, None)
                    await self._close_forward(key, gone)
        for key, target in desired.items():
            if key not in self.watcher.target_keys():
                state = self._pods.setdefault(key, _PodState())
                state.target = target
                found = next((p for p in running if p.name == key), None)
                state.port = resolve_port(spec.endpoint, found) if found is not None else None
                # GUARDRAILS CALL SITE 2 (issue 8): the uid of the pod profiled, checked again before acting.
                state.uid = found.uid if found is not None else None
                cooldowns = {
                    rule: until
                    for (pod, rule, kind), until in self._cooldowns.items()
                    if pod == key and kind == "Capture"
                }
                limit = found.memory_limit_bytes if found is not None else None
                self.watcher.add_target(key, target, pod=key, cooldowns=cooldowns, limit_bytes=limit)

        metrics.TARGETS.inc(len(desired) - self._target_count)
        self._target_count = len(desired)
        if not selected:
            self._set_condition(
                "TargetsResolved",
                "False",
                "NoPodsSelected",
                f"no pod in namespace {self.namespace} matches the selector {spec.selector.describe()}",
                generation,
            )
        elif problems:
            self._set_condition(
                "TargetsResolved", "False", "TargetsUnresolved", "; ".join(problems[:5]), generation
            )
        elif not running:
            self._set_condition(
                "TargetsResolved",
                "False",
                "NoRunningPods",
                f"{len(selected)} pod(s) selected, none running with an IP yet",
                generation,
            )
        else:
            self._set_condition(
                "TargetsResolved", "True", "TargetsFound", f"watching {len(desired)} pod(s)", generation
            )
        await self._write_status(generation, targets=len(desired))

    async def _start_watcher(self, spec: WatchSpec, generation: int) -> None:
        await self._stop_watcher()
        self._spec = spec
        self._generation = generation
        self._store_note = None
        try:
            self._store = await self.make_store(spec, self.namespace)
            # Proves the store writable and sweeps partial captures a crash left behind.
            await asyncio.to_thread(self._store.check_writable)
            self._store_error = None
            primary_error = getattr(self._store, "primary_error", None)
            if primary_error is not None:
                self._store_note = f"the S3 store is unavailable, captures fall back to the operator's volume: {primary_error}"
        except (StoreError, KubeError) as e:
            self._store = None
            self._store_error = str(e)
        settings = WatchSettings(
            interval_seconds=spec.interval_seconds,
            profiles=spec.capture.profiles,
            cooldown_seconds=spec.capture.cooldown_seconds,
            namespace=self.namespace,
            memorywatch=self.name,
            cpu_seconds=spec.capture.cpu_seconds,
        )
        store = self._store if self._store is not None else _UnavailableStore(self._store_error or "no store")
        self.watcher = Watcher(
            spec.rules, store, self.scraper, settings, self._events.put_nowait, clock=self.clock
        )
        self._pods.clear()
        self._watcher_task = asyncio.create_task(
            self.watcher.run(), name=f"watcher {self.namespace}/{self.name}"
        )

    async def _target_for(self, spec: WatchSpec, pod: PodInfo) -> tuple[TargetConfig | None, str | None]:
        ep = spec.endpoint
        port = resolve_port(ep, pod)
        if port is None:
            return None, f"pod {pod.name} has no container port named {ep.port!r} (spec.endpoint.port)"
        token = None
        if ep.bearer_token_secret is not None:
            ref = ep.bearer_token_secret
            try:
                token = (await self.kube.secret_value(self.namespace, ref.name, ref.key)).strip()
            except KubeError as e:
                # GUARDRAILS CALL SITE 4 (issue 8): a Secret its namespace has not granted: the grant command.
                return None, secret_problem(e, forbidden=isinstance(e, ForbiddenError), namespace=self.namespace,
                                            secret=ref.name, field="spec.endpoint.bearerTokenSecretRef",
                                            target=ConsentTarget.from_env(os.environ))  # fmt: skip
        tls = None
        if ep.scheme == "https":
            ca_file = None
            if ep.tls is not None and ep.tls.ca_secret is not None:
                ref = ep.tls.ca_secret
                try:
                    ca_pem = await self.kube.secret_value(self.namespace, ref.name, ref.key)
                except KubeError as e:
                    # GUARDRAILS CALL SITE 5 (issue 8): as call site 4, for the CA bundle.
                    return None, secret_problem(e, forbidden=isinstance(e, ForbiddenError), namespace=self.namespace,
                                                secret=ref.name, field="spec.endpoint.tls.caSecretRef",
                                                target=ConsentTarget.from_env(os.environ))  # fmt: skip
                ca_file = self._ca_file(ref.name, ref.key, ca_pem)
            tls = TLSConfig(
                ca_file=ca_file,
                insecure_skip_verify=bool(ep.tls and ep.tls.insecure_skip_verify),
                server_name=ep.tls.server_name if ep.tls else None,
            )
        if ep.access == "PortForward":
            from memorywatch.k8s.portforward import forwarded_url

            try:
                url = await forwarded_url(self.kube, self.namespace, pod.name, port, scheme=ep.scheme)
            except KubeError as e:
                return None, f"pod {pod.name}: port-forward through the API server failed: {e}"
        else:
            if not pod.ip:
                return None, None
            url = pod_url(ep, pod.ip, port)
        try:
            return (
                TargetConfig(
                    url=url,
                    pprof_path=ep.path,
                    bearer_token=token,
                    tls=tls,
                    metrics_path=ep.metrics_path,
                    name=pod.name,
                ),
                None,
            )
        except ValueError as e:
            return None, f"pod {pod.name}: {e}"

    async def _close_forward(self, pod: str, state: _PodState | None) -> None:
        """A pod that left the watch: drop its port-forward listener, if it had one."""
        if (
            state is None
            or state.port is None
            or self._spec is None
            or self._spec.endpoint.access != "PortForward"
        ):
            return
        from memorywatch.k8s.portforward import close_forward

        await close_forward(self.namespace, pod, state.port)

    def _ca_file(self, name: str, key: str, pem: str) -> str:
        """httpx takes a CA bundle as a file: write it once per Secret key under $TMPDIR (an emptyDir)."""
        ident = f"{name}/{key}"
        path = self._ca_files.get(ident)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix="memorywatch-ca-", suffix=".pem")
            self._ca_files[ident] = path
            os.close(fd)
        with open(path, "w", encoding="utf-8") as f:
            f.write(pem)
        return path

    # ---------------------------------------------------------------- engine events

    async def _consume_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._handle(event)
            except KubeError as e:
                log.warning(
                    "%s/%s: could not record %s: %s", self.namespace, self.name, type(event).__name__, e
                )
            finally:
                self._events.task_done()

    async def _drain_events(self) -> None:
        while not self._events.empty():
            event = self._events.get_nowait()
            try:
                await self._handle(event)
            except KubeError as e:
                log.warning(
                    "%s/%s: could not record %s at shutdown: %s",
                    self.namespace,
                    self.name,
                    type(event).__name__,
                    e,
                )

    def _mw_ref(self) -> ObjectRef:
        return ObjectRef(KIND, self.name, self.namespace, self.uid, API_VERSION)

    def _pod_ref(self, pod: str) -> ObjectRef:
        return ObjectRef("Pod", pod, self.namespace)

    async def _handle(self, event: Event) -> None:
        state = self._pods.setdefault(event.target, _PodState())
        if isinstance(event, SampleEvent):
            metrics.SCRAPES.labels(result="ok").inc()
            metrics.SCRAPE_SECONDS.observe(event.duration_seconds)
            state.last_ok, state.error, state.error_reason = event.sample.time, None, None
        elif isinstance(event, ScrapeFailedEvent):
            metrics.SCRAPES.labels(result="error").inc()
            state.error, state.error_reason = event.error, event.reason
            await self.kube.event(
                self._mw_ref(), "Warning", "ScrapeFailed", f"pod {event.target}: {event.error}"
            )
        elif isinstance(event, BreachEvent):
            await self._on_breach(event, state)
        elif isinstance(event, CaptureEvent):
            await self._on_capture(event)
        elif isinstance(event, CaptureFailedEvent):
            metrics.CAPTURES.labels(result="error").inc()
            self._store_error = event.error
            await self.kube.event(
                self._mw_ref(),
                "Warning",
                "CaptureFailed",
                f"pod {event.target}, rule {event.rule}: {event.error}",
            )
        elif isinstance(event, NoteEvent):
            log.info("%s/%s pod %s: %s", self.namespace, self.name, event.target, event.message)

    async def _on_breach(self, event: BreachEvent, state: _PodState) -> None:
        b = event.breach
        metrics.BREACHES.labels(kind=str(b.kind)).inc()
        state.last_breach = b.time
        # Write-ahead: the cooldown is in status before the capture starts, so a restart cannot repeat it.
        cooldown = float(
            b.evidence.get("cooldown_seconds", self._spec.capture.cooldown_seconds if self._spec else 1800)
        )
        self._cooldowns[(event.target, b.rule, "Capture")] = b.time + cooldown
        self._set_condition(
            "LeakDetected", "True", "LeakDetected", f"pod {event.target}: {b.message}", self._generation
        )
        await self._write_status(self._generation, force=True)
        text = f"rule {b.rule} ({b.kind}) on pod {event.target}: {b.message}"
        await self.kube.event(self._mw_ref(), "Warning", "LeakDetected", text)
        await self.kube.event(
            self._pod_ref(event.target), "Warning", "LeakDetected", f"MemoryWatch {self.name}: {b.message}"
        )

    async def _on_capture(self, event: CaptureEvent) -> None:
        metrics.CAPTURES.labels(result="ok" if not event.errors else "partial").inc()
        self._store_error = None
        entry = {
            "time": iso(event.time),
            "pod": event.target,
            "rule": event.rule,
            "location": event.location,
            "summary": event.summary[:1000],
        }
        self._captures.insert(0, entry)
        del self._captures[MAX_STATUS_CAPTURES:]
        await self._write_status(self._generation, force=True)
        text = f"pod {event.target}, rule {event.rule}: {event.summary[:600]} -> {event.location}"
        await self.kube.event(self._mw_ref(), "Normal", "ProfilesCaptured", text)
        await self.kube.event(
            self._pod_ref(event.target),
            "Normal",
            "ProfilesCaptured",
            f"MemoryWatch {self.name}: {event.location}",
        )
        await self._act(event.target)

    # ---------------------------------------------------------------- actions

    async def _act(self, pod: str) -> None:
        spec = self._spec
        if spec is None or spec.action.type == "None":
            return
        action = spec.action
        now = self.clock()
        workload = await self.actions.workload_of(self.namespace, pod)
        subject = str(workload) if workload is not None else f"Pod/{pod}"
        until = self._cooldowns.get((subject, action.type, "Action"))
        if until is not None and now < until:
            await self._skip(pod, subject, f"{action.type} for {subject} is cooling down until {iso(until)}")
            return
        if subject in self._acting:
            await self._skip(
                pod, subject, f"an action on {subject} is already under way; one pod of a workload at a time"
            )
            return
        self._acting.add(subject)
        try:
            if not action.dry_run:
                # Write-ahead: the cooldown and a pending record reach status before the API call.
                self._cooldowns[(subject, action.type, "Action")] = now + action.cooldown_seconds
                self._record_action(now, pod, subject, action.type, False, "Pending", "about to act")
                await self._write_status(self._generation, force=True)
            outcome = await self.actions.act(
                action.type,
                self.namespace,
                pod,
                dry_run=action.dry_run,
                scale_step=action.scale_step,
                scale_max_replicas=action.scale_max_replicas,
                # GUARDRAILS CALL SITE 3 (issue 8): the runner re-reads the watch and the pod's uid before acting.
                context=ActContext(
                    self.name,
                    self.uid,
                    self._pods[pod].uid if pod in self._pods else None,
                    action.cooldown_seconds,
                ),
            )
        finally:
            self._acting.discard(subject)
        await self._report_action(now, outcome)

    async def _skip(self, pod: str, subject: str, why: str) -> None:
        metrics.ACTIONS.labels(
            action=self._spec.action.type if self._spec else "None", result="skipped"
        ).inc()
        self._record_action(
            self.clock(),
            pod,
            subject,
            self._spec.action.type if self._spec else "None",
            False,
            "Skipped",
            why,
        )
        await self._write_status(self._generation, force=True)
        await self.kube.event(self._mw_ref(), "Normal", "ActionSkipped", f"pod {pod}: {why}")

    async def _report_action(self, now: float, o: ActionOutcome) -> None:
        subject = str(o.workload) if o.workload is not None else f"Pod/{o.pod}"
        if o.performed:
            result, reason, type_ = "Done", "ActionTaken", "Normal"
        else:
            result, reason, type_ = (
                ("DryRun" if o.dry_run else o.reason),
                "ActionSkipped",
                "Normal" if o.dry_run else "Warning",
            )
            if (
                not o.dry_run and o.reason in RETRYABLE_SKIPS
            ):  # a passing obstacle: try again on the next capture
                self._cooldowns.pop((subject, o.action, "Action"), None)
        metrics.ACTIONS.labels(
            action=o.action, result="done" if o.performed else ("dry-run" if o.dry_run else "skipped")
        ).inc()
        self._record_action(now, o.pod, subject, o.action, o.dry_run, result, o.message)
        await self._write_status(self._generation, force=True)
        await self.kube.event(
            self._mw_ref(), type_, reason, f"{o.action} {subject} (pod {o.pod}): {o.message}"
        )
        if o.performed:
            await self.kube.event(
                self._pod_ref(o.pod), "Normal", reason, f"MemoryWatch {self.name}: {o.message}"
            )

    def _record_action(
        self, now: float, pod: str, workload: str, action: str, dry_run: bool, result: str, message: str
    ) -> None:
        entry = {
            "time": iso(now),
            "pod": pod,
            "workload": workload,
            "action": action,
            "dryRun": dry_run,
            "result": result,
            "message": message[:1000],
        }
        head = self._actions[0] if self._actions else {}
        if head.get("result") == "Pending" and head.get("pod") == pod:
            self._actions[0] = entry  # the outcome of the action recorded as pending just before
        else:
            # A repeat of an earlier outcome (same workload, action and result, e.g. AtMaxReplicas on every
            # capture) replaces it, so repeats cannot push the last real action out of status.
            keys = ("workload", "action", "dryRun", "result")
            self._actions = [a for a in self._actions if any(a.get(k) != entry[k] for k in keys)]
            self._actions.insert(0, entry)
        del self._actions[MAX_STATUS_ACTIONS:]

    # ---------------------------------------------------------------- status

    def _set_condition(
        self, type_: str, status: str, reason: str, message: str, generation: int | None
    ) -> None:
        old = self._conditions.get(type_)
        changed = old is None or old.get("status") != status
        self._conditions[type_] = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message[:1000],
            "observedGeneration": generation or 0,
            "lastTransitionTime": iso(self.clock())
            if changed or old is None
            else old.get("lastTransitionTime", iso(self.clock())),
        }

    def _derived_conditions(self, generation: int | None, targets: int) -> None:
        failing = {k: s for k, s in self._pods.items() if s.error}
        if not targets:
            self._set_condition("ScrapesHealthy", "Unknown", "NoTargets", "no target to scrape", generation)
        elif failing:
            name, s = next(iter(sorted(failing.items())))
            self._set_condition(
                "ScrapesHealthy",
                "False",
                s.error_reason or "ScrapeFailed",
                f"{len(failing)}/{targets} failing; {name}: {s.error}",
                generation,
            )
        else:
            self._set_condition(
                "ScrapesHealthy", "True", "ScrapesSucceeding", f"{targets} target(s) answering", generation
            )
        if self._store_error:
            self._set_condition("StoreAvailable", "False", "StoreUnavailable", self._store_error, generation)
        elif self._store_note:
            self._set_condition("StoreAvailable", "True", "FallbackInUse", self._store_note, generation)
        else:
            where = self._store.location if self._store is not None else "?"
            self._set_condition(
                "StoreAvailable", "True", "StoreWritable", f"captures go to {where}", generation
            )
        if "LeakDetected" not in self._conditions:
            self._set_condition("LeakDetected", "False", "NoLeak", "no rule has fired", generation)
        resolved = self._conditions.get("TargetsResolved", {}).get("status") == "True"
        ready_blockers = [
            c
            for c in ("TargetsResolved", "StoreAvailable")
            if self._conditions.get(c, {}).get("status") != "True"
        ]
        if self._conditions.get("Ready", {}).get("reason") in ("InvalidSpec", "Suspended") and not resolved:
            return
        if ready_blockers:
            c = self._conditions[ready_blockers[0]]
            self._set_condition("Ready", "False", c["reason"], c["message"], generation)
        else:
            self._set_condition("Ready", "True", "Watching", f"watching {targets} pod(s)", generation)

    def _breaching(self) -> int:
        now = self.clock()
        return len(
            {
                pod
                for (pod, _, kind), until in self._cooldowns.items()
                if kind == "Capture" and until > now and pod in self._pods
            }
        )

    async def _write_status(
        self, generation: int | None, *, targets: int | None = None, force: bool = False
    ) -> None:
        if targets is None:
            targets = len(self.watcher.target_keys()) if self.watcher else 0
        self._derived_conditions(generation, targets)
        now = self.clock()
        for key in [k for k, until in self._cooldowns.items() if until <= now]:
            del self._cooldowns[key]
        if self.watcher is not None:
            for pod in self.watcher.target_keys():
                for rule, until in self.watcher.cooldowns(pod).items():
                    if until > now:
                        self._cooldowns[(pod, rule, "Capture")] = max(
                            until, self._cooldowns.get((pod, rule, "Capture"), 0.0)
                        )
        conditions = [self._conditions[k] for k in sorted(self._conditions)]
        status: dict[str, Any] = {
            "observedGeneration": generation or 0,
            "targets": targets,
            "breaching": self._breaching(),
            "conditions": conditions,
            "captures": self._captures,
            "lastActions": self._actions,
            "cooldowns": [
                {"pod": pod, "rule": rule, "type": kind, "until": iso(until)}
                for (pod, rule, kind), until in sorted(self._cooldowns.items())
            ][:100],
        }
        comparable = {k: v for k, v in status.items() if k != "conditions"} | {
            "conditions": [
                {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
            ]
        }
        if not force and comparable == self._last_status:
            return
        await self.kube.patch_status(self.namespace, self.name, status)
        self._last_status = comparable


class _UnavailableStore:
    """Stands in when the configured store could not be set up: every capture fails with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def location(self) -> str:
        return "unavailable"

    def check_writable(self) -> None:
        raise StoreError(self.reason)

    def begin(self, key: Any) -> Any:
        raise StoreError(self.reason)

    def list(self, prefix: str = "") -> list[Any]:
        return []

    def read(self, ref: Any, name: str) -> bytes:
        raise StoreError(self.reason)

    def resolve(self, ident: str) -> Any:
        raise StoreError(self.reason)
