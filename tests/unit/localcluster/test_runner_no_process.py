"""The pod runner starts a process for a Running pod with an IP, unless the pod opts out with the
no-process annotation (the scale test's pods, served by the fleet simulator)."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "hack"))

from localcluster.runner import NO_PROCESS_ANNOTATION, Runner


def pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "annotations": annotations or {}},
        "spec": {"nodeName": "mw-node-0", "containers": [{"name": "c", "command": ["/bin/true"]}]},
        "status": {"phase": "Running", "podIP": "127.1.0.7"},
    }


def test_a_running_pod_with_an_ip_gets_a_process() -> None:
    assert Runner.should_run(pod())


def test_a_pod_that_opts_out_gets_none() -> None:
    assert not Runner.should_run(pod({NO_PROCESS_ANNOTATION: "true"}))


def test_only_the_value_true_opts_out() -> None:
    assert Runner.should_run(pod({NO_PROCESS_ANNOTATION: "false"}))
    assert Runner.should_run(pod({NO_PROCESS_ANNOTATION: "yes"}))
