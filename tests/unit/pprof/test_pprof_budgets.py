"""Parse budgets: absurd shapes are refused with a typed error naming the limit, before they cost memory."""

from __future__ import annotations

import json
import pickle

import pytest

from memorywatch.pprof import jobs
from memorywatch.pprof.errors import BudgetExceeded, MalformedText, ProfileCorrupt
from memorywatch.pprof.expvar import parse_expvar
from memorywatch.pprof.goroutines import parse_goroutine_debug1
from memorywatch.pprof.heap_text import parse_heap_text
from memorywatch.pprof.memstats import MAX_ARRAY_ENTRIES, MemStats, parse_memstats_lines
from memorywatch.pprof.profiles import parse_profile
from memorywatch.pprof.prometheus_text import parse_prometheus_text, relevant_lines
from memorywatch.scrape import Limits
from scrape.hostile_servers import goroutine_groups_text, memstats_array_heap_text, profile_bomb

MiB = 1 << 20


def test_a_profile_with_more_samples_than_the_budget_is_refused_before_it_is_resolved() -> None:
    bomb = profile_bomb(300_000)
    assert len(bomb) < 100_000  # tiny on the wire
    with pytest.raises(BudgetExceeded) as caught:
        parse_profile(bomb, 64 * MiB, max_samples=200_000)
    assert caught.value.limit_name == "max_profile_samples"
    assert "200000" in str(caught.value)
    assert len(parse_profile(profile_bomb(1000), 64 * MiB, max_samples=200_000).samples) == 1000


def test_check_profile_applies_the_budget() -> None:
    budget = jobs.ParseBudget(max_profile_samples=10)
    with pytest.raises(BudgetExceeded):
        jobs.check_profile(profile_bomb(11), budget)
    assert jobs.check_profile(profile_bomb(10), budget).sample_count == 10


def test_too_many_goroutine_groups_are_refused() -> None:
    text = goroutine_groups_text(50).decode()
    with pytest.raises(BudgetExceeded) as caught:
        parse_goroutine_debug1(text, max_groups=49)
    assert caught.value.limit_name == "max_goroutine_groups"
    assert len(parse_goroutine_debug1(text, max_groups=50).groups) == 50


def test_a_memstats_array_past_the_limit_is_refused_in_text_and_in_expvar() -> None:
    line = "# PauseNs = [" + " ".join(["1"] * (MAX_ARRAY_ENTRIES + 1)) + "]"
    with pytest.raises(BudgetExceeded) as caught:
        parse_memstats_lines([line])
    assert caught.value.limit_name == "max_memstats_array_entries"
    body = json.dumps({"memstats": {"PauseNs": [1] * 200_000}}).encode()
    with pytest.raises(BudgetExceeded):
        parse_expvar(body)
    ok = parse_memstats_lines(["# PauseNs = [" + " ".join(["1"] * 256) + "]"])
    assert ok.pause_ns == (1,) * 256


def test_the_heap_text_parser_still_refuses_an_endless_memstats_line() -> None:
    # The scraper refuses it earlier (max_line_bytes); the parser's own line check stays as a backstop.
    with pytest.raises((MalformedText, BudgetExceeded)):
        parse_heap_text(memstats_array_heap_text(200_000).decode())


def test_a_sample_keeps_memstats_without_the_pause_arrays() -> None:
    full = MemStats(sys=10, num_gc=3, pause_ns=(1,) * 256, pause_end=(2,) * 256)
    kept = full.without_arrays()
    assert (kept.sys, kept.num_gc, kept.pause_ns, kept.pause_end) == (10, 3, None, None)
    assert MemStats(sys=1).without_arrays() == MemStats(sys=1)
    assert not hasattr(kept, "__dict__")  # slotted: no per-instance dict


def test_parse_errors_cross_process_boundaries_intact() -> None:
    err = BudgetExceeded("profile samples", "max_profile_samples", 10, 11)
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.limit_name, back.limit, back.seen) == (
        BudgetExceeded,
        str(err),
        "max_profile_samples",
        10,
        11,
    )
    text_error = MalformedText("a thing", "seen", "detail")
    assert str(pickle.loads(pickle.dumps(text_error))) == str(text_error)


def test_prometheus_text_is_filtered_to_the_series_we_use() -> None:
    app = 'app_requests_total{path="/x"} 5\n' * 10_000
    body = app + "# TYPE go_goroutines gauge\ngo_goroutines 12\nprocess_resident_memory_bytes 5e+07\n"
    assert relevant_lines(body).count("\n") == 3
    snapshot = parse_prometheus_text(body)
    assert (snapshot.goroutines, snapshot.rss_bytes) == (12, 50_000_000)


def test_prometheus_text_without_our_series_is_still_judged_on_its_start() -> None:
    with pytest.raises(Exception, match="Prometheus"):
        parse_prometheus_text("<<< not metrics at all >>>\n" * 10)


def test_heap_growth_reports_an_unusable_baseline_and_ranks_against_nothing() -> None:
    result = jobs.heap_growth(b"\x1f\x8bnot gzip", profile_bomb(3), jobs.ParseBudget())
    assert not result.baseline_used and result.note is not None and "baseline" in result.note
    assert result.growth[0].function == "main.bomb" and result.growth[0].after == 3
    with pytest.raises(ProfileCorrupt):
        jobs.heap_growth(None, b"\x1f\x8bnot gzip", jobs.ParseBudget())


def test_limits_are_sized_from_the_operators_memory() -> None:
    one_gib = Limits.for_memory_limit(1 << 30)
    assert one_gib.parse_memory_bytes == 256 * MiB
    assert one_gib.max_decompressed_bytes == 16 * MiB
    assert one_gib.max_text_bytes == 32 * MiB
    assert one_gib.max_baseline_bytes == 2 * MiB
    small = Limits.for_memory_limit(256 * MiB)
    assert small.parse_memory_bytes == 128 * MiB and small.max_text_bytes == 8 * MiB
    assert Limits.for_memory_limit(None) == Limits()
    assert Limits.for_memory_limit(1 << 30, parse_workers=1).parse_workers == 1
    assert one_gib.parse_budget.max_decompressed_bytes == 16 * MiB
    assert one_gib.pool_limits.memory_bytes == 256 * MiB


def test_samples_are_counted_on_the_wire_and_odd_bytes_are_corrupt_not_a_crash() -> None:
    from memorywatch.pprof.profiles import count_top_level_field, gunzip_capped

    raw = gunzip_capped(profile_bomb(1000), 64 * MiB)
    assert count_top_level_field(raw, 2, stop_after=10**6) == 1000
    assert count_top_level_field(raw, 2, stop_after=10) == 11  # stops early
    for junk in (b"\x12\xff", b"\x0f", b"\x12\x05ab", b"\x80" * 20):
        with pytest.raises(ProfileCorrupt):
            count_top_level_field(junk, 2, stop_after=10)
