"""A MemoryWatch's status when several replicas share its pods (sharding, docs/scaling.md#sharding), pure.

Each replica writes only its own share, `status.shards.<member>`: what it sees of the pods it owns (counts, its
first scrape error, its resolution, its newest captures, actions and cooldowns). Merge patches of different map
keys do not clobber each other, so no share is lost to another replica's write. Exactly one replica per watch,
the owner of the watch's key under the same rendezvous hashing as pods, writes the summary fields (targets,
breaching, conditions, captures, lastActions, cooldowns) from the shares of the members in its view, and drops
the shares of members no longer in it. With sharding off none of this is used and status has no `shards`.

Shares are read back from the MemoryWatch, which any user with status rights could edit: every field is
type-checked and bounded here, and an unreadable entry counts as absent."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from memorywatch.control.status import (
    MAX_MESSAGE_CHARS,
    MAX_STATUS_COOLDOWNS,
    Condition,
    ScrapeError,
    WatchFacts,
    derive_conditions,
    parse_iso,
    render_status,
    targets_resolved,
)

#: A share keeps fewer entries than the summary: the summary is what people read, the shares feed it.
MAX_SHARE_CAPTURES = 5
MAX_SHARE_ACTIONS = 5
MAX_SHARE_COOLDOWNS = 50
MAX_SHARE_FAULTS = 3
MAX_SUMMARY_ACTIONS = 10
MAX_SUMMARY_CAPTURES = 5
#: The summary fields the summary writer owns (compared against the MemoryWatch to decide whether to write).
SUMMARY_FIELDS = (
    "observedGeneration",
    "targets",
    "breaching",
    "conditions",
    "captures",
    "lastActions",
    "cooldowns",
)
#: Share fields present only when they say something: a share patch sets the absent ones to null, or the merge
#: patch would keep an old value (a scrape error long fixed).
OPTIONAL_SHARE_FIELDS = ("firstScrapeError", "resolution", "storeError", "storeNote", "faults", "leak")
#: Resolution reasons that only say "this share has no pod": the summary's own counts decide those.
_EMPTY_REASONS = frozenset({"NoPodsSelected", "NoRunningPods"})


def watch_key(namespace: str, name: str) -> str:
    """The key the summary writer is chosen by; `watch:` keeps it apart from any pod's key."""
    return f"watch:{namespace}/{name}"


def render_share(
    facts: WatchFacts,
    *,
    breaching: int,
    captures: Sequence[Mapping[str, Any]],
    actions: Sequence[Mapping[str, Any]],
    cooldowns: Mapping[tuple[str, str, str], float],
) -> dict[str, Any]:
    """This replica's share of the watch's status (`status.shards.<member>`)."""
    own = render_status(
        {}, facts, breaching=breaching, captures=captures, actions=actions, cooldowns=cooldowns
    )
    share: dict[str, Any] = {
        "observedGeneration": facts.generation,
        "targets": facts.targets,
        "breaching": breaching,
        "selected": facts.selected,
        "running": facts.running,
        "failing": len(facts.scrape_errors),
        "captures": own["captures"][:MAX_SHARE_CAPTURES],
        "lastActions": own["lastActions"][:MAX_SHARE_ACTIONS],
        "cooldowns": own["cooldowns"][:MAX_SHARE_COOLDOWNS],
    }
    if facts.scrape_errors:
        first = sorted(facts.scrape_errors, key=lambda e: e.pod)[0]
        share["firstScrapeError"] = {"pod": first.pod, "reason": first.reason, "error": first.error[:1000]}
    if facts.resolution is not None:
        status, reason, message = facts.resolution
        share["resolution"] = {"status": status, "reason": reason, "message": message[:MAX_MESSAGE_CHARS]}
    if facts.store_error:
        share["storeError"] = {"reason": facts.store_reason, "message": facts.store_error[:MAX_MESSAGE_CHARS]}
    if facts.store_note:
        share["storeNote"] = facts.store_note[:MAX_MESSAGE_CHARS]
    if facts.faults:
        share["faults"] = [f[:MAX_MESSAGE_CHARS] for f in facts.faults[:MAX_SHARE_FAULTS]]
    if facts.leak is not None:
        share["leak"] = facts.leak[:MAX_MESSAGE_CHARS]
    return share


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 else 0


def _str(v: Any, limit: int = MAX_MESSAGE_CHARS) -> str:
    return v[:limit] if isinstance(v, str) else ""


def _dicts(v: Any) -> list[Mapping[str, Any]]:
    return [x for x in v if isinstance(x, Mapping)] if isinstance(v, list) else []


@dataclasses.dataclass(frozen=True)
class Summary:
    status: dict[str, Any]
    conditions: dict[str, Condition]
    #: Members whose shares are in status but not in the view: the writer deletes them.
    dropped: tuple[str, ...]


def summarize(
    shares: Mapping[str, Any],
    members: Iterable[str],
    previous: Mapping[str, Condition],
    own: WatchFacts,
    *,
    namespace: str,
    selector: str,
    now: float,
) -> Summary:
    """The summary fields from the shares of `members` (the writer's view; its own share must be in `shares`).
    `own` gives what every replica knows alike (generation, spec errors, suspension, store location)."""
    live = set(members)
    dropped = tuple(sorted(m for m in shares if m not in live))
    got = [shares[m] for m in sorted(shares) if m in live and isinstance(shares[m], Mapping)]
    targets = sum(_int(s.get("targets")) for s in got)
    problems: list[str] = []
    causes: set[str] = set()
    errors: list[ScrapeError] = []
    faults: list[str] = []
    store_error: Mapping[str, Any] | None = None
    note = leak = None
    for s in got:
        r = s.get("resolution")
        if (
            isinstance(r, Mapping)
            and r.get("status") != "True"
            and _str(r.get("reason")) not in _EMPTY_REASONS
        ):
            problems.append(_str(r.get("message")))
            causes.add(_str(r.get("reason")))
        e = s.get("firstScrapeError")
        if isinstance(e, Mapping):
            errors.append(
                ScrapeError(_str(e.get("pod"), 253), _str(e.get("reason"), 63), _str(e.get("error")))
            )
        faults.extend(_str(f) for f in (s.get("faults") or [])[:MAX_SHARE_FAULTS] if isinstance(f, str))
        if store_error is None and isinstance(s.get("storeError"), Mapping):
            store_error = s["storeError"]
        note = note or _str(s.get("storeNote")) or None
        leak = leak or _str(s.get("leak")) or None
    failing = sum(_int(s.get("failing")) for s in got)
    facts = dataclasses.replace(
        own,
        targets=targets,
        resolution=targets_resolved(
            namespace,
            selector,
            sum(_int(s.get("selected")) for s in got),
            sum(_int(s.get("running")) for s in got),
            problems,
            causes,
        ),
        scrape_errors=tuple(errors),
        failing=failing,
        store_error=_str(store_error.get("message")) if store_error is not None else None,
        store_reason=_str(store_error.get("reason"), 63) or "StoreUnavailable"
        if store_error
        else "StoreUnavailable",
        store_note=note,
        faults=tuple(faults),
        leak=leak,
    )
    conditions = derive_conditions(previous, facts, now)
    cooldowns: dict[tuple[str, str, str], float] = {}
    for s in got:
        for c in _dicts(s.get("cooldowns"))[:MAX_SHARE_COOLDOWNS]:
            until = parse_iso(_str(c.get("until"), 64))
            if until is None or until <= now:
                continue
            key = (_str(c.get("pod"), 253), _str(c.get("rule"), 63), _str(c.get("type"), 16) or "Capture")
            cooldowns[key] = max(until, cooldowns.get(key, until))
    captures = sorted(
        (dict(c) for s in got for c in _dicts(s.get("captures"))[:MAX_SHARE_CAPTURES]),
        key=lambda c: _str(c.get("time"), 64),
        reverse=True,
    )[:MAX_SUMMARY_CAPTURES]
    actions = sorted(
        (dict(a) for s in got for a in _dicts(s.get("lastActions"))[:MAX_SHARE_ACTIONS]),
        key=lambda a: _str(a.get("time"), 64),
        reverse=True,
    )[:MAX_SUMMARY_ACTIONS]
    status = render_status(
        conditions,
        facts,
        breaching=sum(_int(s.get("breaching")) for s in got),
        captures=captures,
        actions=actions,
        cooldowns=dict(sorted(cooldowns.items())[:MAX_STATUS_COOLDOWNS]),
    )
    return Summary(status, conditions, dropped)


def summary_of(status: Mapping[str, Any]) -> dict[str, Any]:
    """The summary fields of a status as written (to compare with a new summary)."""
    return {k: status[k] for k in SUMMARY_FIELDS if k in status}
