"""Hostile tenants cannot take the shared operator down (issue 7), end to end on the local control plane.

In one namespace, pods serve hostile input (tests/e2e/testdata/hostile_pod.py): a profile bomb next to
30 MiB of /metrics and 50,000 goroutine stacks (`bomb`), a MemStats array of 200,000 entries (`arrays`), a
heap profile that hangs mid-body (`hang`), plus a MemoryWatch whose Threshold is a CEL bomb. In another, a
real goroutine-leaking Go service. We test that the victim's leak is detected and captured within two
windows (as alone), that the operator's RSS (with its parse workers) stays under the chart's 1 GiB limit
(peak printed and written in docs/security.md), that /healthz answers throughout, and that every hostile
input shows up on its own MemoryWatch naming the limit it hit.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Iterator

import pytest
from e2e_harness import TESTDATA, deployment_manifest, http_get, running_pods, wait_until
from operator_support import QUICK_RULES, condition, events, get_mw, memorywatch, new_namespace

# mw_operator is the operator fixture of test_operator.py (helm-installed chart), shared by import.
from test_operator import Operator, _apply, _delete_memorywatches, _deploy, mw_operator  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

WINDOW_SECONDS = 40  # QUICK_RULES' goroutine-leak window
RUN_SECONDS = 150
TEN = "[1,2,3,4,5,6,7,8,9,10]"
CEL_BOMB = f"{TEN}.all(a, {TEN}.all(b, {TEN}.all(c, {TEN}.all(d, a + b + c + d > 0))))"
HOSTILE_RULES = [
    *QUICK_RULES,
    {"name": "hostile-count", "kind": "Threshold", "expression": "goroutines > 900000"},
]


@dataclasses.dataclass
class Batch:
    hostile: str
    victim: str
    leak_seconds: float | None
    healthz: list[int]
    peak_rss_bytes: int
    # event-loop lag probes during the run (from the operator's histogram): all of them, those <= 100 ms, <= 250 ms
    # and <= 1 s
    lag_probes: float = 0.0
    lag_probes_within_100ms: float = 0.0
    lag_probes_within_250ms: float = 0.0
    lag_probes_within_1s: float = 0.0


def tree_rss_bytes(pid: int) -> int:
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            status = pathlib.Path(f"/proc/{current}/status").read_text()
            children = pathlib.Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next((int(x.split()[1]) * 1024 for x in status.splitlines() if x.startswith("VmRSS:")), 0)
        pids.extend(int(c) for c in children)
    return total


def lag_buckets(ip: str) -> dict[str, float]:
    """The operator's event-loop lag histogram, as cumulative counts by bucket bound (`le`)."""
    code, text = http_get(f"http://{ip}:9090/metrics", timeout=10.0)
    assert code == 200, text[:500]
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("memorywatch_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    assert out, "no memorywatch_event_loop_lag_seconds histogram on /metrics"
    return out


@pytest.fixture(scope="module")
def batch(mw_operator: Operator) -> Iterator[Batch]:  # noqa: F811 - the fixture imported above
    op = mw_operator  # named statically, so the e2e conftest builds the operator image before the run
    hostile = new_namespace(op.core, "e2e-hostile")
    victim = new_namespace(op.core, "e2e-victim")
    try:
        for kind in ("bomb", "arrays", "hang"):
            manifest = deployment_manifest(
                kind,
                [sys.executable, str(TESTDATA / "hostile_pod.py")],
                args=["--listen=$(POD_IP):6060", f"--kind={kind}"],
            )
            op.apps.create_namespaced_deployment(hostile, manifest)
        for kind in ("bomb", "arrays", "hang"):
            wait_until(lambda k=kind: running_pods(op.core, hostile, f"app={k}"), 90, f"hostile {kind} pod")
        _apply(op, hostile, memorywatch("bomb", "bomb", rules=HOSTILE_RULES))
        _apply(op, hostile, memorywatch("arrays", "arrays"))
        _apply(op, hostile, memorywatch("hang", "hang"))
        _apply(op, hostile, memorywatch("cel-bomb", "bomb", rules=[
            {"name": "cel-bomb", "kind": "Threshold", "expression": CEL_BOMB}]))  # fmt: skip
        _deploy(op, victim, "spinner", "goroutine-leak", rate=20)
        pod = op.pod()
        status = op.cluster.runner_status(op.namespace, pod.metadata.name) or {}
        pid = int(status["containers"]["memorywatch"]["pid"])
        ip = pod.status.pod_ip

        lag_before = lag_buckets(ip)
        started = time.monotonic()
        _apply(op, victim, memorywatch("spinner", "spinner"))
        leak_seconds: float | None = None
        healthz: list[int] = []
        peak = 0
        while time.monotonic() - started < RUN_SECONDS:
            try:
                healthz.append(http_get(f"http://{ip}:8080/healthz", timeout=5.0)[0])
            except OSError:
                healthz.append(0)
            peak = max(peak, tree_rss_bytes(pid))
            if leak_seconds is None and events(op.core, victim, reason="LeakDetected", kind="MemoryWatch"):
                leak_seconds = time.monotonic() - started
            time.sleep(1)
        lag_after = lag_buckets(ip)
        probes = lag_after["+Inf"] - lag_before.get("+Inf", 0.0)
        within = lag_after["0.1"] - lag_before.get("0.1", 0.0)
        within_250ms = lag_after["0.25"] - lag_before.get("0.25", 0.0)
        within_1s = lag_after["1"] - lag_before.get("1", 0.0)
        print(
            f"\noperator peak RSS with its parse workers: {peak / 2**20:.0f} MiB; leak after {leak_seconds}s;"
            f" event-loop lag <= 100 ms in {within:.0f} of {probes:.0f} probes"
        )
        yield Batch(hostile, victim, leak_seconds, healthz, peak, probes, within, within_250ms, within_1s)
    finally:
        _delete_memorywatches(op)
        for name in (hostile, victim):
            op.core.delete_namespace(name)


def test_the_victims_leak_is_detected_and_captured_as_fast_as_alone(
    request: pytest.FixtureRequest, batch: Batch
) -> None:
    op: Operator = request.getfixturevalue("mw_operator")
    assert batch.leak_seconds is not None, "no LeakDetected on the victim's MemoryWatch"
    assert batch.leak_seconds <= 2 * WINDOW_SECONDS + 20, f"leak named after {batch.leak_seconds:.0f}s"
    status = get_mw(op.custom, batch.victim, "spinner").get("status") or {}
    assert status.get("captures"), json.dumps(status)[:3000]


def test_the_operator_stays_healthy_and_under_its_memory_limit(batch: Batch) -> None:
    assert batch.healthz and all(code == 200 for code in batch.healthz), batch.healthz
    assert 0 < batch.peak_rss_bytes < 1 << 30, f"peak {batch.peak_rss_bytes / 2**20:.0f} MiB"


def test_no_hostile_parse_blocks_the_event_loop(batch: Batch) -> None:
    # The operator probes its loop every 0.25 s; a parse on the loop costs seconds (8 MiB of Prometheus text took
    # ~5 s when it ran there) and would show here. The lag targets themselves are measured by the benchmark
    # (docs/scaling.md), not asserted in this timed test: a loaded 2-core machine adds scheduling noise.
    assert batch.lag_probes > 100, "the lag probe did not run during the hostile batch"
    seen = (
        f"{batch.lag_probes:.0f} probes: {batch.lag_probes_within_100ms:.0f} <= 100 ms,"
        f" {batch.lag_probes_within_250ms:.0f} <= 250 ms, {batch.lag_probes_within_1s:.0f} <= 1 s"
    )
    assert batch.lag_probes_within_1s == batch.lag_probes, f"a probe lagged over a second: {seen}"
    assert batch.lag_probes_within_250ms >= 0.99 * batch.lag_probes, f"p99 over 250 ms: {seen}"


def _event_of(op: Operator, namespace: str, mw: str, reason: str) -> list[str]:
    return [
        e.message
        for e in events(op.core, namespace, reason=reason, kind="MemoryWatch")
        if e.involved_object.name == mw
    ]


def test_every_hostile_input_is_reported_on_its_own_memorywatch_naming_the_limit(
    request: pytest.FixtureRequest, batch: Batch
) -> None:
    op: Operator = request.getfixturevalue("mw_operator")
    arrays = " ".join(_event_of(op, batch.hostile, "arrays", "ScrapeFailed"))
    assert "max_line_bytes" in arrays, arrays
    hang = " ".join(_event_of(op, batch.hostile, "hang", "ScrapeFailed"))
    assert "timeout" in hang, hang
    cel = condition(get_mw(op.custom, batch.hostile, "cel-bomb"), "Ready")
    assert cel.get("reason") == "InvalidSpec" and "MAX_ESTIMATED_COST" in cel.get("message", ""), cel
    bomb = get_mw(op.custom, batch.hostile, "bomb").get("status") or {}
    assert bomb.get("captures"), json.dumps(bomb)[:3000]
    manifests = list((op.store / batch.hostile / "bomb").glob("*/*/manifest.json"))
    assert manifests, f"no capture of the bomb in {op.store}"
    errors = " ".join(json.loads(manifests[0].read_text())["errors"])
    assert "max_profile_samples" in errors and "max_goroutine_groups" in errors, errors
    # Nothing of the hostile namespace reached the victim's MemoryWatch.
    assert not _event_of(op, batch.victim, "spinner", "ScrapeFailed")
