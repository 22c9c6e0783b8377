"""Whether to act on a pod after a capture: a pure function of the facts, the single entry point for every
guardrail on actions (add facts to `ActionRequest` and refusals to `decide_action`; the executor carries out
whatever comes back and records it)."""

from __future__ import annotations

import dataclasses

from memorywatch.actions.guards import RETRYABLE_REASONS
from memorywatch.api.spec import ActionSpec
from memorywatch.control.status import iso

# Skips worth retrying at the next capture; any other skip (at max replicas, no workload, forbidden) keeps the
# action's cooldown, so it is not retried, and reported, on every capture. Passing guard refusals (rate limits,
# too many unavailable) are retryable too.
RETRYABLE_SKIPS = frozenset({"RolloutInProgress", "DisruptionBudget", "Failed"}) | RETRYABLE_REASONS


@dataclasses.dataclass(frozen=True)
class ActionRequest:
    """The facts a decision is made from. `subject` is what the action changes: `Deployment/x`, or `Pod/p`
    for a pod without a controller."""

    pod: str
    subject: str
    action: ActionSpec
    now: float
    cooldown_until: float | None = None
    in_progress: bool = False


@dataclasses.dataclass(frozen=True)
class ActionDecision:
    """`act`: call the action runner (with `dry_run`). Otherwise `reason` (CamelCase) and `message` say why not;
    `record` False means nothing is worth recording (no action configured)."""

    act: bool
    dry_run: bool = False
    reason: str = ""
    message: str = ""
    record: bool = True


def decide_action(req: ActionRequest) -> ActionDecision:
    a = req.action
    if a.type == "None":
        return ActionDecision(False, reason="NoAction", message="spec.action.type is None", record=False)
    if req.cooldown_until is not None and req.now < req.cooldown_until:
        return ActionDecision(
            False,
            reason="CoolingDown",
            message=f"{a.type} for {req.subject} is cooling down until {iso(req.cooldown_until)}",
        )
    if req.in_progress:
        return ActionDecision(
            False,
            reason="InProgress",
            message=f"an action on {req.subject} is already under way; one pod of a workload at a time",
        )
    return ActionDecision(True, dry_run=a.dry_run, reason="Act", message=f"{a.type} {req.subject}")


def keeps_cooldown(outcome_reason: str, dry_run: bool) -> bool:
    """After a real action that did not happen: False when the obstacle may pass (retry at the next capture)."""
    return dry_run or outcome_reason not in RETRYABLE_SKIPS
