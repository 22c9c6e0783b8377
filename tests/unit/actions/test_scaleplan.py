"""Scale decisions: what changes (workload replicas or an HPA's minReplicas), the undo record, and no compounding."""

from __future__ import annotations

import json
from typing import Any

from memorywatch.actions.scaleplan import SCALED_ANNOTATION, HPAFacts, ScaleChange, ScaleSkip, plan_scale


def plan(**over: Any) -> ScaleChange | ScaleSkip:
    args: dict[str, Any] = dict(
        workload_kind="Deployment", workload_name="web", namespace="shop", replicas=2, hpa=None,
        annotation=None, step=1, max_replicas=5, now=1000.0, cooldown_seconds=600.0, by="shop/mw",
    )  # fmt: skip
    return plan_scale(**(args | over))


def test_scales_the_workload_and_records_the_change() -> None:
    p = plan()
    assert isinstance(p, ScaleChange)
    assert (p.kind, p.field, p.before, p.after, p.original) == ("Deployment", "spec.replicas", 2, 3, 2)
    record = json.loads(p.annotation)
    assert record == {"object": "Deployment/web", "field": "spec.replicas", "from": 2, "to": 3,
                      "original": 2, "at": 1000.0, "by": "shop/mw"}  # fmt: skip
    assert "kubectl -n shop patch deployment web" in p.undo and '"replicas":2' in p.undo
    assert f'"{SCALED_ANNOTATION}":null' in p.undo


def test_hpa_min_replicas_is_raised_instead() -> None:
    p = plan(hpa=HPAFacts("web-hpa", 2, 10), replicas=3)
    assert isinstance(p, ScaleChange)
    assert (p.kind, p.name, p.field, p.before, p.after) == (
        "HorizontalPodAutoscaler",
        "web-hpa",
        "spec.minReplicas",
        2,
        4,
    )
    assert "patch hpa web-hpa" in p.undo and '"minReplicas":2' in p.undo


def test_hpa_at_its_max_is_left_alone() -> None:
    p = plan(hpa=HPAFacts("web-hpa", 2, 4), replicas=4)
    assert isinstance(p, ScaleSkip) and p.reason == "HPAOwnsReplicas"


def test_max_replicas_caps() -> None:
    assert isinstance(p := plan(replicas=5), ScaleSkip) and p.reason == "AtMaxReplicas"
    assert isinstance(p := plan(replicas=4, step=3), ScaleChange) and p.after == 5
    assert isinstance(p := plan(hpa=HPAFacts("h", 2, 10), replicas=2, step=5, max_replicas=4), ScaleChange)
    assert p.after == 4


def test_a_second_decision_within_the_cooldown_does_nothing() -> None:
    first = plan()
    assert isinstance(first, ScaleChange)
    # Another operator replica (or another watch) reads the object after the first patch.
    again = plan(replicas=3, annotation=first.annotation, now=1001.0)
    assert isinstance(again, ScaleSkip) and again.reason == "RecentlyScaled"
    assert "from 2 to 3" in again.message


def test_after_the_cooldown_it_scales_again_and_keeps_the_original() -> None:
    first = plan()
    assert isinstance(first, ScaleChange)
    later = plan(replicas=3, annotation=first.annotation, now=1000.0 + 601)
    assert isinstance(later, ScaleChange) and (later.before, later.after, later.original) == (3, 4, 2)


def test_garbage_annotation_is_ignored() -> None:
    for junk in ("{", "[]", '"x"', '{"at": "soon"}'):
        assert isinstance(plan(annotation=junk), ScaleChange)
