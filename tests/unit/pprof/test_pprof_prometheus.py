"""/metrics text: the series the rules use, with or without the optional Go 1.26 metrics."""

from __future__ import annotations

import pathlib

import pytest

from memorywatch.pprof import MalformedMetrics, PromSnapshot, parse_prometheus_text


def test_finalizer_target_metrics(go_fixtures_dir: pathlib.Path) -> None:
    snapshot = parse_prometheus_text((go_fixtures_dir / "metrics.txt").read_text())
    assert snapshot.rss_bytes == 25997312
    assert snapshot.goroutines == 7
    assert snapshot.threads == 8
    # Counter families declared with `_total`: the parser strips it from the family, not the sample.
    assert (snapshot.finalizers_queued, snapshot.finalizers_executed) == (9695, 5)
    assert snapshot.heap_live_bytes == 7497032
    assert snapshot.heap_objects == 13299
    assert (snapshot.sys_bytes, snapshot.heap_released_bytes) == (26310920, 5439488)
    # This target does not export the cleanup counters.
    assert snapshot.cleanups_queued is None and snapshot.cleanups_executed is None


def test_cgo_target_rss_grows_while_sys_does_not(go_fixtures_dir: pathlib.Path) -> None:
    t0 = parse_prometheus_text((go_fixtures_dir / "metrics_cgo_t0.txt").read_text())
    t1 = parse_prometheus_text((go_fixtures_dir / "metrics_cgo_t1.txt").read_text())
    assert t0.rss_bytes is not None and t1.rss_bytes is not None
    assert t1.rss_bytes - t0.rss_bytes > 5 << 20
    assert t0.sys_bytes is not None and t1.sys_bytes is not None
    assert abs(t1.sys_bytes - t0.sys_bytes) < 1 << 20


def test_metrics_without_the_optional_series() -> None:
    text = "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.2e+07\n"
    assert parse_prometheus_text(text) == PromSnapshot(rss_bytes=12_000_000)


def test_counters_written_every_way_an_exporter_may() -> None:
    declared_without_suffix = (
        "# TYPE go_gc_cleanups_queued_cleanups counter\ngo_gc_cleanups_queued_cleanups_total 40\n"
        "go_gc_cleanups_executed_cleanups_total 38\n"  # untyped, no TYPE line at all
    )
    snapshot = parse_prometheus_text(declared_without_suffix)
    assert (snapshot.cleanups_queued, snapshot.cleanups_executed) == (40, 38)


def test_labelled_nan_and_unknown_series_are_ignored() -> None:
    text = 'go_goroutines{pod="x"} 5\ngo_threads NaN\nhttp_requests_total{code="200"} 1027\ngo_goroutines 9\n'
    assert parse_prometheus_text(text) == PromSnapshot(goroutines=9)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   \n",
        "<!DOCTYPE html><html><body>login</body></html>",
        '{"go_goroutines": 5}',
        "go_goroutines five\n",
    ],
)
def test_bodies_that_are_not_exposition(body: str) -> None:
    with pytest.raises(MalformedMetrics, match="expected Prometheus text exposition"):
        parse_prometheus_text(body)


def test_process_start_time_is_read_when_exported() -> None:
    """client_golang's process collector exports the start time as a float of unix seconds."""
    text = (
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1.76448123456e+09\n"
    )
    assert parse_prometheus_text(text).process_start_seconds == 1_764_481_234
