"""Fault injection into a running controller: Secret reads answering 500/429 for a minute, an exception in status
writing, an exception inside a rule and inside a capture (reported by the engine as FaultEvents), an exception
in the controller's own event handling. Each time the watch reports Degraded with the cause and a Warning
event, recovers by itself, and loses no series or cooldown."""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from tests.unit.control.fakes import FakeClock, FaultInjectingKube, Stop, SyntheticScraper, pod
from tests.unit.control.harness import RULES, Running, body, controller, until
from tests.unit.control.test_watch_state import growth

from memorywatch.control.watch import ControllerFailed
from memorywatch.engine.events import CaptureEvent, FaultEvent

LONG_RULES = [{**rule, "window": "30m"} for rule in RULES]  # longer than the failures below
TOKEN = {
    "port": 6060,
    "bearerTokenSecretRef": {"name": "tok", "key": "token"},
    "allowInsecureBearerToken": True,
}


def degraded(kube: FaultInjectingKube) -> dict[str, str]:
    return kube.condition("Degraded")


@pytest.mark.parametrize(("status", "cause"), [(500, "ApiUnavailable"), (429, "TooManyRequests")])
async def test_secret_reads_failing_for_a_minute(tmp_path: pathlib.Path, status: int, cause: str) -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    kube.secrets[("ns", "tok")] = {"token": "t"}
    scraper = SyntheticScraper(clock, growth=50, step_seconds=1)
    c = controller(tmp_path, kube, clock, scraper)
    async with Running(c, body(1, endpoint=TOKEN, rules=LONG_RULES)) as r:
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend")
        c.cooldowns[("shop-1", "goroutines-a", "Capture")] = clock() + 7200
        watcher = c.watcher

        kube.secret_status = status
        clock.advance(c.secrets.ttl_seconds)  # the cached token is due for a refresh
        kube.secrets_fail_until = clock() + 60
        reads_before = kube.secret_reads
        while clock() < kube.secrets_fail_until:
            await c.reconcile(r.body, r.pods)
            assert c.watcher is watcher and c.watcher.target_keys() == ["shop-1"], "the target is kept"
            cond = degraded(kube)
            assert cond["status"] == "True" and cause in cond["message"] and "shop-1" in cond["message"], cond
            assert kube.condition("Ready")["status"] == "True", "still watching, with the last token read"
            clock.advance(2)
        assert kube.secret_reads - reads_before <= 60 / c.secrets.retry_seconds + 1, "reads are spaced out"
        await until(lambda: kube.warnings("Degraded"), "the Warning event (posted in the background)")
        await asyncio.sleep(0.05)
        warnings = kube.warnings("Degraded")
        assert len(warnings) == 1 and cause in warnings[0].message, "one aggregated Warning, not one per tick"

        await c.reconcile(r.body, r.pods)  # the API server answers again
        clock.advance(c.faults.quiet_seconds)
        await c.reconcile(r.body, r.pods)
        assert degraded(kube)["status"] == "False", degraded(kube)
        assert growth(c, "goroutines-a") is not None, "the series survived"
        assert any(x["rule"] == "goroutines-a" for x in kube.status["cooldowns"]), "the cooldown survived"


async def test_a_new_pod_whose_secret_cannot_be_read_is_reported_unresolved(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    kube.secrets_fail_until = clock() + 60
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock))
    await c.reconcile(body(1, endpoint=TOKEN), [pod("shop-1")])
    resolved = kube.condition("TargetsResolved")
    assert resolved["status"] == "False" and "500" in resolved["message"], resolved
    assert degraded(kube)["status"] == "True"
    clock.advance(61)
    kube.secrets[("ns", "tok")] = {"token": "t"}
    await c.reconcile(body(1, endpoint=TOKEN), [pod("shop-1")])
    assert kube.condition("TargetsResolved")["status"] == "True"
    await c._stop_watcher()


async def test_an_exception_in_status_writing(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock, growth=50, step_seconds=1))
    async with Running(c, body(1, rules=LONG_RULES)) as r:
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend")
        c.cooldowns[("shop-1", "goroutines-a", "Capture")] = clock() + 7200
        kube.status_failures = 3
        for _ in range(3):
            await c.write_status(force=True)
        await until(lambda: kube.warnings("Degraded"), "the Warning event")
        assert kube.warnings("Degraded") and "status" in kube.warnings("Degraded")[0].message
        assert "RuntimeError" in kube.warnings("Degraded")[0].message

        await c.reconcile(r.body, r.pods)  # writes again: the failure is now in status
        cond = degraded(kube)
        assert cond["status"] == "True" and "RuntimeError" in cond["message"] and "status" in cond["message"]
        clock.advance(c.faults.quiet_seconds)
        await c.reconcile(r.body, r.pods)
        assert degraded(kube)["status"] == "False"
        assert growth(c, "goroutines-a") is not None
        assert any(x["rule"] == "goroutines-a" for x in kube.status["cooldowns"])


@pytest.mark.parametrize(
    ("component", "cause", "recovery"),
    [("rule:goroutines-b", "RecursionError", "sample"), ("capture", "MemoryError", "capture")],
)
async def test_engine_faults_become_degraded_and_clear(
    tmp_path: pathlib.Path, component: str, cause: str, recovery: str
) -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock, growth=50, step_seconds=1))
    async with Running(c, body(1, rules=LONG_RULES)) as r:
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend")
        c.cooldowns[("shop-1", "goroutines-a", "Capture")] = clock() + 7200
        for _ in range(5):  # the engine reports it on every tick; the Warning is aggregated
            c.queue.put_nowait(FaultEvent("shop-1", clock(), component, cause, "injected", retry_seconds=2.0))
        await until(lambda: degraded(kube).get("status") == "True", "Degraded")
        cond = degraded(kube)
        assert cause in cond["message"] and component in cond["message"] and "shop-1" in cond["message"]
        await until(lambda: kube.warnings("Degraded"), "the Warning event")
        assert len(kube.warnings("Degraded")) == 1

        clock.advance(c.faults.quiet_seconds)
        if recovery == "capture":
            c.queue.put_nowait(CaptureEvent("shop-1", clock(), "goroutines-a", "file:///x", (), "summary"))
        await until(lambda: len(c.queue) == 0, "the queue drained")
        await c.reconcile(r.body, r.pods)
        await until(lambda: degraded(kube).get("status") == "False", "recovered")
        assert growth(c, "goroutines-a") is not None
        assert any(x["rule"] == "goroutines-a" for x in kube.status["cooldowns"])


async def test_an_exception_while_handling_one_event_does_not_stop_the_consumer(
    tmp_path: pathlib.Path,
) -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock, step_seconds=1))
    async with Running(c, body(1)):
        await until(lambda: c.watcher is not None and c.watcher.target_keys(), "a target")
        kube.status_failures = 1
        kube.status_error = KeyError("injected")
        c.queue.put_nowait(CaptureEvent("shop-1", clock(), "goroutines-a", "file:///one", (), "one"))
        c.queue.put_nowait(CaptureEvent("shop-1", clock(), "goroutines-a", "file:///two", (), "two"))
        await until(
            lambda: (
                [x["location"] for x in kube.status.get("captures", [])][:2] == ["file:///two", "file:///one"]
            ),
            "both captures in status",
        )
        assert any("KeyError" in w.message for w in kube.warnings("Degraded"))


async def test_a_controller_that_cannot_go_on_fails_loudly(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    kube = FaultInjectingKube(clock)
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock))

    def broken_body() -> dict[str, object]:
        raise RuntimeError("injected: the body cannot be read")

    with pytest.raises(ControllerFailed, match="reconcile failed 8 times in a row"):
        await asyncio.wait_for(c.run(broken_body, lambda: [pod("shop-1")], Stop()), 30)
