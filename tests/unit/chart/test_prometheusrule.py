"""The chart's PrometheusRule: gated by a value and by prometheus-operator's CRD, valid for `promtool check
rules`, each alert unit-tested by `promtool test rules` against recorded series (prometheusrule_test.yaml),
every expression naming only metrics the operator exports, and every runbook link landing on a heading of
docs/runbooks.md. promtool is built from the Go module proxy by hack/build-tools."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from chart_helpers import REPO, find, only
from promql_names import metric_names, unknown_names

from conftest import Render
from support.tools import tool_path

CRD_API = ("--api-versions", "monitoring.coreos.com/v1/PrometheusRule")
ALERTS = {
    "MemoryWatchLeakDetected",
    "MemoryWatchCaptureFailing",
    "MemoryWatchStoreUnavailable",
    "MemoryWatchStoreDegraded",
    "MemoryWatchStoreFull",
    "MemoryWatchScrapesFailing",
    "MemoryWatchNotificationsFailing",
    "MemoryWatchOperatorDown",
}
UNIT_TESTS = pathlib.Path(__file__).with_name("prometheusrule_test.yaml")


@pytest.fixture(scope="session")
def promtool() -> pathlib.Path:
    return tool_path("PROMTOOL")


def _rules(render: Render, values: dict[str, Any] | None = None) -> dict[str, Any]:
    docs = render({"prometheusRule": {"enabled": True, **(values or {})}}, *CRD_API)
    return only(docs, "PrometheusRule")


def _promtool(promtool: pathlib.Path, cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_off_by_default_and_skipped_without_the_crd(render: Render) -> None:
    assert not find(render(*()), "PrometheusRule")
    assert not find(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")


def test_promtool_checks_the_rules_and_every_alert_passes_its_unit_test(
    render: Render, promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rule = _rules(render, {"additionalLabels": {"release": "kube-prometheus-stack"}})
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    checked = _promtool(promtool, tmp_path, "check", "rules", "rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    shutil.copy(UNIT_TESTS, tmp_path / "tests.yaml")
    tested = _promtool(promtool, tmp_path, "test", "rules", "tests.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has at least one case where it fires and one where it must not.
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    checks = [c for t in cases for c in t["alert_rule_test"]]
    assert {c["alertname"] for c in checks if c["exp_alerts"]} == ALERTS
    assert {c["alertname"] for c in checks if not c["exp_alerts"]} >= ALERTS - {"MemoryWatchStoreDegraded"}


def test_a_broken_expectation_fails_promtool(
    render: Render, promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(render)["spec"]))
    broken = UNIT_TESTS.read_text().replace(
        "summary: 2 pod(s) of MemoryWatch", "summary: 3 pod(s) of MemoryWatch"
    )
    (tmp_path / "tests.yaml").write_text(broken)
    tested = _promtool(promtool, tmp_path, "test", "rules", "tests.yaml")
    assert tested.returncode != 0 and "3 pod(s)" in tested.stdout + tested.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{1,6} (.+)$", markdown, re.MULTILINE)
    }


def test_alerts_name_exported_metrics_and_link_their_runbooks(render: Render) -> None:
    rule = _rules(render, {"runbookBaseURL": "https://docs.example.internal/memorywatch/runbooks.md/"})
    alerts = rule["spec"]["groups"][0]["rules"]
    assert {a["alert"] for a in alerts} == ALERTS
    anchors = _anchors((REPO / "docs" / "runbooks.md").read_text())
    for alert in alerts:
        assert metric_names(alert["expr"]), alert["expr"]
        assert not unknown_names(alert["expr"]), f"{alert['alert']}: {unknown_names(alert['expr'])}"
        url = alert["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == "https://docs.example.internal/memorywatch/runbooks.md"
        assert anchor == alert["alert"].lower() and anchor in anchors, url
        assert alert["labels"]["severity"] in {"warning", "critical"}


def test_job_and_store_threshold_come_from_values(render: Render) -> None:
    rule = _rules(render, {"job": "memorywatch", "storeFreeRatio": 0.05})
    by_name = {a["alert"]: a for a in rule["spec"]["groups"][0]["rules"]}
    assert 'job="memorywatch"' in by_name["MemoryWatchOperatorDown"]["expr"]
    assert by_name["MemoryWatchStoreFull"]["expr"].endswith("< 0.05")
