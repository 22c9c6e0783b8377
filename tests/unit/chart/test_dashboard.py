"""The Grafana dashboard ConfigMap: gated by a value, labelled for Grafana's sidecar, and every query names only
metrics the operator really exports (read from its prometheus_client registry), so a renamed metric fails here.

Also the per-watch metrics' life cycle: created at zero when a watch starts, removed when it goes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chart_helpers import CHART, find, only
from prometheus_client import REGISTRY
from promql_names import exported_names, metric_names, unknown_names

from conftest import Render
from memorywatch import metrics

DASHBOARD = CHART / "files" / "dashboards" / "memorywatch.json"


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0])
    return exprs


def test_the_dashboard_is_off_by_default_and_labelled_for_the_sidecar(render: Render) -> None:
    assert not find(render(), "ConfigMap", "mw-memorywatch-dashboard")
    docs = render({"dashboard": {"enabled": True, "annotations": {"grafana_folder": "Platform"}}})
    cm = only(docs, "ConfigMap", "mw-memorywatch-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert json.loads(cm["data"]["memorywatch.json"]) == json.loads(DASHBOARD.read_text())
    other = render({"dashboard": {"enabled": True, "namespace": "monitoring", "labels": {"dash": "x"}}})
    cm = only(other, "ConfigMap", "mw-memorywatch-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring" and cm["metadata"]["labels"]["dash"] == "x"


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) >= 15
    for expr in queries:
        assert metric_names(expr), f"no metric found in {expr!r}"
        assert not unknown_names(expr), (
            f"{expr!r} names {unknown_names(expr)}, which the operator does not export"
        )
    # Per-watch state is on the dashboard, not only operator totals.
    used = set().union(*(metric_names(e) for e in queries))
    assert {"memorywatch_watch_targets_failing", "memorywatch_watch_breaches_total"} <= used


@pytest.mark.parametrize(
    ("expr", "unknown"),
    [
        ("sum(rate(memorywatch_scrape_total[5m]))", {"memorywatch_scrape_total"}),
        ('memorywatch_watch_targets{memorywatch="by"} / memorywatch_targetz', {"memorywatch_targetz"}),
        (
            "histogram_quantile(0.9, sum by (le) (rate(memorywatch_scrape_duration_seconds[5m])))",
            {"memorywatch_scrape_duration_seconds"},
        ),
    ],
)
def test_the_check_catches_a_wrong_name(expr: str, unknown: set[str]) -> None:
    assert unknown_names(expr) == unknown


def test_the_registry_lists_the_operator_metrics() -> None:
    names = exported_names()
    assert {
        "memorywatch_scrapes_total",
        "memorywatch_scrape_duration_seconds_bucket",
        "memorywatch_build_info",
    } <= names
    assert "memorywatch_scrapes" not in names  # a counter is exported with _total


def _value(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_per_watch_series_start_at_zero_and_go_with_the_watch() -> None:
    labels = {"watch_namespace": "shop", "memorywatch": "checkout-test"}
    metrics.register_watch("shop", "checkout-test")
    assert _value("memorywatch_watch_breaches_total", {**labels, "kind": "HeapGrowth"}) == 0.0
    assert _value("memorywatch_watch_captures_total", {**labels, "result": "error"}) == 0.0
    assert _value("memorywatch_watch_targets_failing", labels) == 0.0
    # Store availability is unknown until the first write or check: no series, so no false alert.
    assert _value("memorywatch_watch_store_available", labels) is None
    metrics.WATCH_STORE_AVAILABLE.labels("shop", "checkout-test").set(1)
    metrics.forget_watch("shop", "checkout-test")
    for name, extra in [
        ("memorywatch_watch_breaches_total", {"kind": "HeapGrowth"}),
        ("memorywatch_watch_captures_total", {"result": "ok"}),
        ("memorywatch_watch_targets_failing", {}),
        ("memorywatch_watch_store_available", {}),
    ]:
        assert _value(name, {**labels, **extra}) is None, name
    metrics.forget_watch("shop", "checkout-test")  # twice is harmless
