"""A deleted MemoryWatch lets go at once: its controller stops without waiting for a capture under way, without
acting or writing on the watch's behalf, and leaves no task behind, also when kopf cancels it half-way; once
its daemon is done, the handler annotates the object so kopf removes the finalizer without waiting for its
own timer. An operator that exits still finishes a capture under way."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

import pytest
from tests.unit.control.fakes import FakeClock, FakeKube, RecordingActions, SyntheticScraper
from tests.unit.control.harness import Running, body, controller, until

from memorywatch.actions import Workload
from memorywatch.control.queue import EventQueue
from memorywatch.control.release import being_deleted, forget_events
from memorywatch.control.watch import WatchController
from memorywatch.engine.events import CaptureEvent, NoteEvent
from memorywatch.handlers import STOPPED_ANNOTATION, nudge_after_stop
from memorywatch.k8s import KubeError, NotFoundError
from memorywatch.scrape import ScrapeError, TargetConfig

ALWAYS = [{"name": "always", "kind": "Threshold", "expression": "goroutines >= 0", "for": "0"}]
CAPTURE = {"cooldown": "1h", "profiles": ["heap"]}


class HangingScraper(SyntheticScraper):
    """Serves samples, but a profile download never ends until `release` is set (a slow CPU profile)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock, step_seconds=1)
        self.release = asyncio.Event()
        self.downloading = asyncio.Event()
        self.cancelled = 0

    async def fetch_profile_info(self, target: TargetConfig, name: str, **_: Any) -> Any:
        self.downloading.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise ScrapeError(target.display_name, name, "not served by the synthetic scraper")


def deleted(b: dict[str, Any]) -> dict[str, Any]:
    return {**b, "metadata": {**b["metadata"], "deletionTimestamp": "2026-12-01T19:00:00Z"}}


def controller_tasks(c: WatchController) -> list[asyncio.Task[Any]]:
    names = ("supervised", f"watcher {c.namespace}/{c.name}", "watch ")
    return [t for t in asyncio.all_tasks() if not t.done() and t.get_name().startswith(names)]


def started(tmp_path: pathlib.Path) -> tuple[FakeKube, HangingScraper, RecordingActions, WatchController]:
    clock, kube = FakeClock(), FakeKube()
    scraper = HangingScraper(clock)
    actions = RecordingActions(Workload("Deployment", "shop", "ns"))
    return kube, scraper, actions, controller(tmp_path, kube, clock, scraper, actions)


async def test_a_deleted_watch_stops_at_once_without_waiting_for_its_capture_or_acting(
    tmp_path: pathlib.Path,
) -> None:
    kube, scraper, actions, c = started(tmp_path)
    r = Running(c, body(1, rules=ALWAYS, capture=CAPTURE, action={"type": "EvictPod"}))
    await r.__aenter__()
    await asyncio.wait_for(scraper.downloading.wait(), 10)  # a breach, and its capture is under way
    writes, events = len(kube.statuses), len(kube.events)

    r.body = deleted(r.body)
    r.stop.set()
    assert r.task is not None
    await asyncio.wait_for(r.task, 5)  # the capture would never end: waiting for it would time out here

    assert scraper.cancelled == 1, "the capture under way was abandoned"
    assert actions.calls == [], "nothing is done for a deleted watch"
    assert (len(kube.statuses), len(kube.events)) == (writes, events), (
        "no status write or Event after deletion"
    )
    assert controller_tasks(c) == [], "no task of the controller outlives it"


async def test_an_exiting_operator_finishes_the_capture_under_way(tmp_path: pathlib.Path) -> None:
    kube, scraper, _, c = started(tmp_path)
    r = Running(c, body(1, rules=ALWAYS, capture=CAPTURE))
    await r.__aenter__()
    await asyncio.wait_for(scraper.downloading.wait(), 10)

    r.stop.set()  # no deletionTimestamp: the operator is stopping
    assert r.task is not None
    await asyncio.sleep(0.3)
    assert not r.task.done(), "the controller waits for the capture"
    scraper.release.set()
    await asyncio.wait_for(r.task, 10)
    assert scraper.cancelled == 0
    assert kube.status.get("captures"), "the capture is finished and recorded in status"


async def test_a_cancelled_stop_still_ends_every_task_of_the_controller(tmp_path: pathlib.Path) -> None:
    """kopf cancels a daemon that has not stopped after its grace time: the cleanup must still run."""
    _, scraper, _, c = started(tmp_path)
    r = Running(c, body(1, rules=ALWAYS, capture=CAPTURE))
    await r.__aenter__()
    await asyncio.wait_for(scraper.downloading.wait(), 10)
    r.stop.set()
    await asyncio.sleep(0.1)
    assert r.task is not None and not r.task.done()

    r.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(r.task, 5)
    await until(lambda: not controller_tasks(c), "every task of the controller to end", within=5)


def test_being_deleted_reads_the_deletion_timestamp() -> None:
    assert being_deleted(deleted(body(1)))
    assert not being_deleted(body(1))
    assert not being_deleted({})


def test_the_events_of_a_deleted_watch_are_dropped_and_its_captures_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = EventQueue(10)
    queue.put_nowait(NoteEvent("shop-1", 1.0, "a note"))
    queue.put_nowait(CaptureEvent("shop-1", 2.0, "always", "/captures/ns/mw/shop-1/x", ("heap.pb.gz",), "ok"))
    with caplog.at_level(logging.INFO, logger="memorywatch.control.release"):
        assert forget_events(queue, "ns", "mw") == 2
    assert queue.get_nowait() is None
    assert "/captures/ns/mw/shop-1/x" in caplog.text


class AnnotatingKube:
    def __init__(self, error: KubeError | None = None) -> None:
        self.error = error
        self.annotations: list[tuple[str, str, dict[str, str]]] = []

    async def annotate(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        if self.error is not None:
            raise self.error
        self.annotations.append((namespace, name, dict(annotations)))


async def _nudged(kube: AnnotatingKube) -> None:
    await asyncio.wait_for(nudge_after_stop(kube, "ns", "mw"), 5)  # type: ignore[arg-type]  # its one method


async def test_the_stopped_daemon_annotates_the_deleted_watch_so_kopf_looks_again() -> None:
    kube = AnnotatingKube()
    await _nudged(kube)
    assert [(ns, n, list(a)) for ns, n, a in kube.annotations] == [("ns", "mw", [STOPPED_ANNOTATION])]


@pytest.mark.parametrize("error", [NotFoundError("gone", 404), KubeError("503 Service Unavailable", 503)])
async def test_a_failed_nudge_is_harmless(error: KubeError) -> None:
    await _nudged(AnnotatingKube(error))  # raises nothing: kopf's own timer still releases the watch


@pytest.mark.parametrize("drain_seconds", [20.0, 0.0])
async def test_an_exiting_operator_records_queued_events_within_its_drain_budget(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, drain_seconds: float
) -> None:
    kube, _, _, c = started(tmp_path)
    c.drain_seconds = drain_seconds
    c.queue.put_nowait(
        CaptureEvent("shop-1", 2.0, "always", "/captures/ns/mw/shop-1/x", ("heap.pb.gz",), "ok")
    )
    stop = Running(c, body(1)).stop
    stop.set()
    with caplog.at_level(logging.INFO, logger="memorywatch.control.release"):
        await asyncio.wait_for(c.run(lambda: body(1), lambda: [], stop), 5)
    recorded = [cap["location"] for cap in c.captures]
    if drain_seconds:
        assert recorded == ["/captures/ns/mw/shop-1/x"] and kube.events, "recorded in status and an Event"
    else:
        assert recorded == [] and not kube.events, "out of time: dropped"
        assert "/captures/ns/mw/shop-1/x" in caplog.text, "and the capture's location is logged"
