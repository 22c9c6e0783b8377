"""Guarded actions on a leaking pod's workload: evict the pod, restart the rollout, or scale out.

The controller decides whether to act (cooldowns, dry runs); this package resolves the workload and does
it through the API (Eviction API, a rollout-restart patch, the scale subresource), reporting one outcome.
"""

from memorywatch.actions.guards import ActionPolicy
from memorywatch.actions.model import ActContext, ActionOutcome, ActionRunner, Workload
from memorywatch.actions.ratelimit import RateLimits

__all__ = ["ActContext", "ActionOutcome", "ActionPolicy", "ActionRunner", "RateLimits", "Workload"]
