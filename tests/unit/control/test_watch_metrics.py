"""The per-watch metrics the alerts read (charts/memorywatch/templates/prometheusrule.yaml) follow the controller:
created at zero when a watch starts, set from its facts on every status publish, gone when it stops."""

from __future__ import annotations

import pathlib

from prometheus_client import REGISTRY
from tests.unit.control.fakes import FakeClock, FakeKube, SyntheticScraper
from tests.unit.control.harness import Running, body, controller, until

from memorywatch.control.status import WatchFacts

LABELS = {"watch_namespace": "ns", "memorywatch": "mw"}


def value(name: str, **extra: str) -> float | None:
    return REGISTRY.get_sample_value(name, {**LABELS, **extra})


async def test_per_watch_series_live_and_die_with_the_watch(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock))
    async with Running(c, body(1)):
        await until(lambda: value("memorywatch_watch_targets") == 1, "the watch's target gauge")
        assert value("memorywatch_watch_breaches_total", kind="GoroutineGrowth") == 0, "created at zero"
        assert value("memorywatch_watch_captures_total", result="error") == 0
        assert value("memorywatch_watch_store_available") == 1
        await c._publish(WatchFacts(generation=1, targets=3, store_error="the volume is full"))
        assert value("memorywatch_watch_targets") == 3
        assert value("memorywatch_watch_store_available") == 0
    assert value("memorywatch_watch_targets") is None, "a stopped watch leaves no series behind"
    assert value("memorywatch_watch_breaches_total", kind="GoroutineGrowth") is None
