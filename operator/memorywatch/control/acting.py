"""Carries out what `policy.decide_action` decided and records it: the write-ahead cooldown and pending record
(in status before the API call, so a restarted operator never acts twice), the runner call, the outcome in
`status.lastActions`, events and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from memorywatch import metrics
from memorywatch.actions import ActContext, ActionOutcome, ActionRunner
from memorywatch.api.spec import ActionSpec
from memorywatch.control.policy import ActionRequest, decide_action, keeps_cooldown
from memorywatch.control.ports import Clock
from memorywatch.control.posting import EventPoster
from memorywatch.control.status import iso

MAX_STATUS_ACTIONS = 10
Cooldowns = dict[tuple[str, str, str], float]  # (pod or workload, rule or action, Capture|Action) -> until


class ActionLog:
    """`status.lastActions`: newest first, bounded; a repeated outcome replaces its older twin."""

    def __init__(self, entries: list[dict[str, Any]] | None = None) -> None:
        self.entries: list[dict[str, Any]] = list(entries or [])[:MAX_STATUS_ACTIONS]

    def record(
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
        head = self.entries[0] if self.entries else {}
        if head.get("result") == "Pending" and head.get("pod") == pod:
            del self.entries[0]  # the outcome of the action recorded as pending just before replaces it
        # A repeat of an earlier outcome (same workload, action and result, e.g. AtMaxReplicas on every
        # capture) replaces it, so repeats cannot push the last real action out of status.
        keys = ("workload", "action", "dryRun", "result")
        self.entries = [a for a in self.entries if any(a.get(k) != entry[k] for k in keys)]
        self.entries.insert(0, entry)
        del self.entries[MAX_STATUS_ACTIONS:]


class ActionExecutor:
    def __init__(
        self,
        runner: ActionRunner,
        poster: EventPoster,
        namespace: str,
        cooldowns: Cooldowns,
        log: ActionLog,
        write_status: Callable[[], Awaitable[None]],
        clock: Clock,
    ) -> None:
        self._runner = runner
        self._poster = poster
        self.namespace = namespace
        self._cooldowns = cooldowns
        self.log = log
        self._write_status = write_status
        self._clock = clock
        self._acting: set[str] = set()
        #: the MemoryWatch's uid, and the uid of the pod profiled under a name (set by the controller)
        self.watch_uid: str | None = None
        self.pod_uid: Callable[[str], str | None] = lambda pod: None
        #: told each outcome of an attempted action (the controller queues its notification; never blocks)
        self.on_outcome: Callable[[ActionOutcome], None] = lambda outcome: None

    async def after_capture(self, pod: str, action: ActionSpec) -> None:
        if action.type == "None":
            return
        now = self._clock()
        workload = await self._runner.workload_of(self.namespace, pod)
        subject = str(workload) if workload is not None else f"Pod/{pod}"
        decision = decide_action(
            ActionRequest(
                pod=pod,
                subject=subject,
                action=action,
                now=now,
                cooldown_until=self._cooldowns.get((subject, action.type, "Action")),
                in_progress=subject in self._acting,
            )
        )
        if not decision.act:
            if decision.record:
                await self._skip(pod, subject, action.type, decision.message)
            return
        self._acting.add(subject)
        try:
            if not decision.dry_run:
                # Write-ahead: the cooldown and a pending record reach status before the API call.
                self._cooldowns[(subject, action.type, "Action")] = now + action.cooldown_seconds
                self.log.record(now, pod, subject, action.type, False, "Pending", "about to act")
                await self._write_status()
            outcome = await self._runner.act(
                action.type,
                self.namespace,
                pod,
                dry_run=decision.dry_run,
                scale_step=action.scale_step,
                scale_max_replicas=action.scale_max_replicas,
                # the runner re-reads the watch and the pod's uid right before acting (guardrails)
                context=ActContext(
                    self._poster.name, self.watch_uid, self.pod_uid(pod), action.cooldown_seconds
                ),
            )
        finally:
            self._acting.discard(subject)
        await self._report(now, outcome)

    async def _skip(self, pod: str, subject: str, action: str, why: str) -> None:
        metrics.ACTIONS.labels(action=action, result="skipped").inc()
        self.log.record(self._clock(), pod, subject, action, False, "Skipped", why)
        await self._write_status()
        await self._poster.on_watch("Normal", "ActionSkipped", f"pod {pod}: {why}")

    async def _report(self, now: float, o: ActionOutcome) -> None:
        subject = str(o.workload) if o.workload is not None else f"Pod/{o.pod}"
        if o.performed:
            result, reason, type_ = "Done", "ActionTaken", "Normal"
        else:
            result = "DryRun" if o.dry_run else o.reason
            reason, type_ = "ActionSkipped", "Normal" if o.dry_run else "Warning"
            if not keeps_cooldown(o.reason, o.dry_run):  # a passing obstacle: try again on the next capture
                self._cooldowns.pop((subject, o.action, "Action"), None)
        metrics.ACTIONS.labels(
            action=o.action, result="done" if o.performed else ("dry-run" if o.dry_run else "skipped")
        ).inc()
        self.log.record(now, o.pod, subject, o.action, o.dry_run, result, o.message)
        await self._write_status()
        await self._poster.on_watch(type_, reason, f"{o.action} {subject} (pod {o.pod}): {o.message}")
        self.on_outcome(o)
        if o.performed:
            await self._poster.on_pod(
                o.pod, "Normal", reason, f"MemoryWatch {self._poster.name}: {o.message}"
            )
