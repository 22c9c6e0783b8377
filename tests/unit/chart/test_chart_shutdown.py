"""The pod's grace period covers how long the operator's daemons may take to stop, so a capture in flight at
shutdown completes instead of being killed half-way."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from chart_helpers import only

from memorywatch import handlers

Render = Callable[..., list[dict[str, Any]]]
# kopf's own exit around the daemons' stop: closing watches and workers.
KOPF_EXIT_MARGIN_SECONDS = 10
# The other profiles of a capture after its CPU profile (each bounded by the scraper's read timeout).
OTHER_PROFILES_SECONDS = 30
REPO = pathlib.Path(__file__).resolve().parents[3]


def test_grace_period_covers_the_daemons_stop(render: Render) -> None:
    pod = only(render(), "Deployment")["spec"]["template"]["spec"]
    stop = handlers.STOP_GRACE_SECONDS + handlers.STOP_TIMEOUT_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= stop + KOPF_EXIT_MARGIN_SECONDS, (
        f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} < the daemons' stop ({stop}s) "
        f"+ {KOPF_EXIT_MARGIN_SECONDS}s"
    )


def test_the_daemons_grace_covers_the_longest_capture() -> None:
    """An exiting operator finishes a capture under way; kopf's cancellation (after STOP_GRACE_SECONDS) would
    abandon it. The longest is a CPU profile of the CRD's maximum cpuSeconds plus the other profiles."""
    import yaml

    crd = yaml.safe_load((REPO / "crds" / "memorywatch.io_memorywatches.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    longest_cpu = spec["capture"]["properties"]["cpuSeconds"]["maximum"]
    assert longest_cpu + OTHER_PROFILES_SECONDS <= handlers.STOP_GRACE_SECONDS


def test_grace_period_can_be_set(render: Render) -> None:
    pod = only(render({"terminationGracePeriodSeconds": 600}), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 600


@pytest.mark.parametrize("value", [5, "150"])
def test_grace_period_out_of_range_or_not_a_number_is_refused(
    helm_template: Callable[..., Any], value: object
) -> None:
    proc = helm_template({"terminationGracePeriodSeconds": value})
    assert proc.returncode != 0
    assert "terminationGracePeriodSeconds" in proc.stderr
