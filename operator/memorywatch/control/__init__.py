"""The operator's controller for one MemoryWatch, in small parts with one job each.

- `watch.WatchController`: the orchestrator a kopf daemon runs (reconcile loop, engine, event consumer).
- `resolve`: pods into scrape targets; `secrets.SecretCache` serves Secret keys from a TTL cache.
- `status`: the pure status model (facts and previous conditions in, status and conditions out).
- `posting.EventPoster`: Kubernetes Events, aggregated (never one per tick).
- `policy.decide_action`: whether to act on a captured pod; the single entry point for action guardrails.
- `acting.ActionExecutor`: carries out a decision and records the outcome.
- `notifying.WatchNotifications`: `spec.notify` (messages, event choice, rate limit, sink URLs from the
  watch's namespace) handed to the operator's one `notify.Notifier` without waiting.
- `supervise`: task supervision with backoff; `queue.EventQueue`: the bounded engine-event queue;
  `faults.FaultBook`: what is currently broken (the Degraded condition); `lag`: the event-loop lag metric.
- `sharding` (pure): which replica owns a pod (rendezvous hashing); `membership.MemberLeases`: the live replicas
  from their Leases; `shard_config`: the `memorywatch run` flags that turn it on (docs/scaling.md#sharding).
- `ports`: the small protocols these parts need from the Kubernetes API (fakes implement them in tests).

Errors (`watch.ControlError` is the root): `ControllerFailed` is the one exception that leaves
`WatchController.run`: the controller cannot go on and the kopf daemon must fail so that kopf restarts it.
`StatusNotWritten` stops an action whose write-ahead cooldown could not be written (it becomes an `action` fault).
Every other failure becomes a condition and an event.
"""
