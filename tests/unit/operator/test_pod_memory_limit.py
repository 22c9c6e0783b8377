"""The kernel OOM-kills a container at its own memory limit, so MemoryLimit forecasts against the limit of the
container that serves pprof, never the pod's sum: a 600Mi app next to a 2Gi sidecar is judged against 600Mi."""

from __future__ import annotations

from typing import Any

from memorywatch.targets import pod_info

MI = 2**20


def pod(*containers: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "p", "uid": "u", "annotations": annotations or {}},
        "spec": {"containers": list(containers)},
        "status": {"podIP": "10.0.0.1", "phase": "Running"},
    }


def container(name: str, memory: str | None, *ports: int) -> dict[str, Any]:
    limits = {"memory": memory} if memory is not None else {}
    return {"name": name, "ports": [{"containerPort": p} for p in ports], "resources": {"limits": limits}}


def test_the_container_declaring_the_pprof_port_gives_the_limit() -> None:
    info = pod_info(pod(container("app", "600Mi", 8080, 6060), container("proxy", "2Gi", 15000)))
    assert info.memory_limit_for_port(6060) == 600 * MI
    assert info.memory_limit_for_port(15000) == 2048 * MI


def test_the_sidecar_first_still_judges_the_app_by_its_port() -> None:
    info = pod_info(pod(container("proxy", "2Gi", 15000), container("app", "600Mi", 6060)))
    assert info.memory_limit_for_port(6060) == 600 * MI


def test_an_undeclared_port_falls_back_to_the_default_container() -> None:
    both = (container("proxy", "2Gi", 15000), container("app", "600Mi"))
    assert pod_info(pod(*both)).memory_limit_for_port(6060) == 2048 * MI  # the first container
    annotated = pod_info(pod(*both, annotations={"kubectl.kubernetes.io/default-container": "app"}))
    assert annotated.memory_limit_for_port(6060) == 600 * MI
    assert annotated.memory_limit_for_port(None) == 600 * MI


def test_a_container_without_a_limit_or_with_a_bad_one_has_none() -> None:
    info = pod_info(pod(container("app", None, 6060), container("sidecar", "lots", 7070)))
    assert info.memory_limit_for_port(6060) is None
    assert info.memory_limit_for_port(7070) is None
    assert info.memory_limit_bytes is None


def test_when_the_process_serving_the_port_started() -> None:
    """From the status of the container declaring the port (state.running.startedAt); nothing for a container
    not running, or a time that does not parse."""
    body = pod(
        container("proxy", "2Gi", 15000), container("app", "600Mi", 6060), container("idle", None, 7070)
    )
    body["status"]["containerStatuses"] = [
        {"name": "app", "state": {"running": {"startedAt": "2026-12-02T10:00:00Z"}}},
        {"name": "proxy", "state": {"running": {"startedAt": "yesterday"}}},
        {"name": "idle", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
    ]
    info = pod_info(body)
    assert info.started_at_for_port(6060) == 1_796_205_600.0
    assert info.started_at_for_port(15000) is None and info.started_at_for_port(7070) is None
    assert info.started_at_for_port(9999) is None, "an undeclared port: the default container (proxy)"
    assert pod_info(pod(container("app", None, 6060))).started_at_for_port(6060) is None, "no status yet"
