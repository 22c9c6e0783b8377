"""The status model, pure: facts about the watch and the previous conditions in, conditions and the status
object out. No I/O and no clock of its own (times are arguments), so every transition is unit-tested.

Conditions: Ready (the summary), TargetsResolved, ScrapesHealthy, StoreAvailable, LeakDetected, Degraded.
`lastTransitionTime` changes only when a condition's status changes; `observedGeneration` is the generation the
facts were taken from. `comparable` strips what changes without news, so the writer patches only on change."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from memorywatch.api.consent import REASON as SECRET_ACCESS_NOT_GRANTED

MAX_MESSAGE_CHARS = 1000
MAX_STATUS_COOLDOWNS = 100


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str  # True | False | Unknown
    reason: str
    message: str
    observed_generation: int
    last_transition_time: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": self.last_transition_time,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Condition:
        return cls(
            type=str(d.get("type", "")),
            status=str(d.get("status", "Unknown")),
            reason=str(d.get("reason", "Unknown")),
            message=str(d.get("message", "")),
            observed_generation=int(d.get("observedGeneration") or 0),
            last_transition_time=str(d.get("lastTransitionTime", "")),
        )


def set_condition(
    conditions: dict[str, Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: float,
) -> None:
    """Set one condition in `conditions`, keeping lastTransitionTime when the status did not change."""
    old = conditions.get(type_)
    keep = old is not None and old.status == status and old.last_transition_time
    conditions[type_] = Condition(
        type_,
        status,
        reason,
        message[:MAX_MESSAGE_CHARS],
        generation,
        old.last_transition_time if keep and old is not None else iso(now),
    )


@dataclasses.dataclass(frozen=True)
class ScrapeError:
    pod: str
    reason: str
    error: str


@dataclasses.dataclass(frozen=True)
class WatchFacts:
    """What the controller knows at one moment; everything the conditions are derived from."""

    generation: int
    targets: int = 0
    #: The spec's problems (InvalidSpec), or empty.
    spec_errors: tuple[str, ...] = ()
    suspended: bool = False
    #: TargetsResolved as (status, reason, message); None leaves it as it was.
    resolution: tuple[str, str, str] | None = None
    scrape_errors: tuple[ScrapeError, ...] = ()
    #: Targets failing, when `scrape_errors` holds only some of them (a sharded summary); None: all of them.
    failing: int | None = None
    #: Pods the selector matches, and of those the ones running with an IP (TargetsResolved).
    selected: int = 0
    running: int = 0
    store_error: str | None = None
    #: The StoreAvailable=False reason with store_error (CaptureQuotaExceeded for a quota, else StoreUnavailable).
    store_reason: str = "StoreUnavailable"
    store_note: str | None = None
    store_location: str = "?"
    #: Descriptions of the active faults, newest first (the Degraded condition).
    faults: tuple[str, ...] = ()
    #: The newest breach's message when one fired since the last status; None leaves LeakDetected as it was.
    leak: str | None = None


def derive_conditions(
    previous: Mapping[str, Condition], facts: WatchFacts, now: float
) -> dict[str, Condition]:
    c = dict(previous)
    g = facts.generation
    if facts.spec_errors:
        set_condition(c, "Ready", "False", "InvalidSpec", "; ".join(facts.spec_errors), g, now)
        return c
    if facts.suspended:
        set_condition(c, "Ready", "False", "Suspended", "spec.suspend is true: nothing is scraped", g, now)
        return c
    if facts.resolution is not None:
        set_condition(c, "TargetsResolved", *facts.resolution, g, now)
    if not facts.targets:
        set_condition(c, "ScrapesHealthy", "Unknown", "NoTargets", "no target to scrape", g, now)
    elif facts.scrape_errors or facts.failing:
        failing = len(facts.scrape_errors) if facts.failing is None else facts.failing
        first = min(facts.scrape_errors, key=lambda e: e.pod, default=ScrapeError("?", "ScrapeFailed", "?"))
        message = f"{failing}/{facts.targets} failing; {first.pod}: {first.error}"
        set_condition(c, "ScrapesHealthy", "False", first.reason or "ScrapeFailed", message, g, now)
    else:
        message = f"{facts.targets} target(s) answering"
        set_condition(c, "ScrapesHealthy", "True", "ScrapesSucceeding", message, g, now)
    if facts.store_error:
        set_condition(c, "StoreAvailable", "False", facts.store_reason, facts.store_error, g, now)
    elif facts.store_note:
        set_condition(c, "StoreAvailable", "True", "FallbackInUse", facts.store_note, g, now)
    else:
        message = f"captures go to {facts.store_location}"
        set_condition(c, "StoreAvailable", "True", "StoreWritable", message, g, now)
    if facts.leak is not None:
        set_condition(c, "LeakDetected", "True", "LeakDetected", facts.leak, g, now)
    elif "LeakDetected" not in c:
        set_condition(c, "LeakDetected", "False", "NoLeak", "no rule has fired", g, now)
    if facts.faults:
        more = f" (and {len(facts.faults) - 1} more)" if len(facts.faults) > 1 else ""
        set_condition(c, "Degraded", "True", "TaskFailed", facts.faults[0] + more, g, now)
    else:
        set_condition(
            c, "Degraded", "False", "AllTasksRunning", "every task of this watch is running", g, now
        )
    blockers = [t for t in ("TargetsResolved", "StoreAvailable") if c.get(t) is None or c[t].status != "True"]
    if blockers:
        b = c.get(blockers[0])
        reason, message = (b.reason, b.message) if b is not None else ("Starting", "targets not resolved yet")
        set_condition(c, "Ready", "False", reason, message, g, now)
    else:
        set_condition(c, "Ready", "True", "Watching", f"watching {facts.targets} pod(s)", g, now)
    return c


def render_status(
    conditions: Mapping[str, Condition],
    facts: WatchFacts,
    *,
    breaching: int,
    captures: Sequence[Mapping[str, Any]],
    actions: Sequence[Mapping[str, Any]],
    cooldowns: Mapping[tuple[str, str, str], float],
) -> dict[str, Any]:
    """The status object to patch. Cooldowns are (pod or workload, rule or action, Capture|Action) -> until."""
    return {
        "observedGeneration": facts.generation,
        "targets": facts.targets,
        "breaching": breaching,
        "conditions": [conditions[k].as_dict() for k in sorted(conditions)],
        "captures": [dict(c) for c in captures],
        "lastActions": [dict(a) for a in actions],
        "cooldowns": [
            {"pod": pod, "rule": rule, "type": kind, "until": iso(until)}
            for (pod, rule, kind), until in sorted(cooldowns.items())
        ][:MAX_STATUS_COOLDOWNS],
    }


def comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    """`status` without lastTransitionTime: two statuses equal here carry the same news."""
    return {k: v for k, v in status.items() if k != "conditions"} | {
        "conditions": [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []
        ]
    }


def targets_resolved(
    namespace: str,
    selector: str,
    selected: int,
    running: int,
    problems: Sequence[str],
    causes: Collection[str] = (),
) -> tuple[str, str, str]:
    """TargetsResolved as (status, reason, message). `causes` are the problems' causes: a Secret the namespace
    has not granted access to (SecretAccessNotGranted) names the reason, since its message has the fix."""
    if not selected:
        return ("False", "NoPodsSelected", f"no pod in namespace {namespace} matches the selector {selector}")
    if problems:
        reason = SECRET_ACCESS_NOT_GRANTED if SECRET_ACCESS_NOT_GRANTED in causes else "TargetsUnresolved"
        return ("False", reason, "; ".join(problems[:5]))
    if not running:
        return ("False", "NoRunningPods", f"{selected} pod(s) selected, none running with an IP yet")
    return ("True", "TargetsFound", f"watching {running} pod(s)")


def merge_cooldowns(
    cooldowns: dict[tuple[str, str, str], float], engine: Mapping[str, Mapping[str, float]], now: float
) -> None:
    """Drop ended cooldowns and take in the engine's capture cooldowns (pod -> rule -> until), the later wins."""
    for key in [k for k, until in cooldowns.items() if until <= now]:
        del cooldowns[key]
    for pod, rules in engine.items():
        for rule, until in rules.items():
            if until > now:
                key = (pod, rule, "Capture")
                cooldowns[key] = max(until, cooldowns.get(key, 0.0))


def breaching_pods(cooldowns: Mapping[tuple[str, str, str], float], pods: Sequence[str], now: float) -> int:
    """Watched pods with a capture cooldown running: a rule fired on them recently."""
    watched = set(pods)
    return len(
        {p for (p, _, kind), until in cooldowns.items() if kind == "Capture" and until > now and p in watched}
    )
