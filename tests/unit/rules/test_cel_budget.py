"""CEL cost budgets: a static check when rules load, a step/time meter on every evaluation; an expression over
budget disables its rule for the target with a note naming the limit, and nothing it does raises."""

from __future__ import annotations

import time

import celpy
import pytest

from memorywatch.api.rules_config import ConfigError, rules_from_dicts
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules import cel_cost
from memorywatch.rules.base import INACTIVE, WATCHING
from memorywatch.rules.model import RuleKind, RuleSpec
from memorywatch.rules.threshold import OVER_BUDGET, Threshold
from memorywatch.samples import Sample

TEN = "[1,2,3,4,5,6,7,8,9,10]"
# ~250 characters, well inside the CRD's 1,024: ten thousand evaluations of the innermost body per sample.
BOMB = f"{TEN}.all(a, {TEN}.all(b, {TEN}.all(c, {TEN}.all(d, a + b + c + d > 0))))"
DEEP = "(" * 90 + "goroutines" + ")" * 90 + " > 1"


def threshold(expression: str) -> Threshold:
    return Threshold(RuleSpec(name="cel", kind=RuleKind.THRESHOLD, expression=expression))


def sample(t: float = 1000.0) -> Sample:
    return Sample(
        target="t", time=t, goroutines=5, memstats=MemStats(sys=1 << 30, heap_alloc=1 << 20, num_gc=3)
    )


def config(expression: str) -> list[RuleSpec]:
    return rules_from_dicts([{"name": "cel", "kind": "Threshold", "expression": expression}])


def test_a_nested_all_over_literal_lists_is_refused_at_load_naming_the_limit() -> None:
    with pytest.raises(ConfigError) as caught:
        config(BOMB)
    message = str(caught.value)
    assert "rules[0].expression" in message and "MAX_ESTIMATED_COST" in message


def test_deep_nesting_is_refused_at_load_naming_the_limit() -> None:
    with pytest.raises(ConfigError, match="MAX_AST_DEPTH"):
        config(DEEP)
    with pytest.raises(ConfigError, match="MAX_AST_DEPTH"):
        config("!" * 900 + "true")


def test_an_expression_longer_than_the_crd_allows_is_refused() -> None:
    with pytest.raises(ConfigError, match="at most 1024 characters"):
        config("goroutines > 1 && " * 60 + "true")


def test_ordinary_expressions_stay_far_inside_the_budget() -> None:
    for expression in (
        "double(rss) / double(limit) > 0.9",
        "has(memstats.Sys) && memstats.Sys - memstats.HeapReleased > 4 * 1024 * 1024 * 1024",
        "memstats.all(k, k != 'PauseNs') && goroutines > 10000",
    ):
        assert config(expression)
        tree = celpy.Environment().compile(expression)
        assert cel_cost.estimated_cost(tree) < cel_cost.MAX_ESTIMATED_COST / 2


def test_a_bomb_that_reaches_the_rule_anyway_is_inactive_from_the_start() -> None:
    rule = threshold(BOMB)  # e.g. an operator older than the check wrote it into a CR
    started = time.perf_counter()
    verdict = rule.observe(sample(), started_at=0.0)
    assert time.perf_counter() - started < 0.5
    assert verdict.state == INACTIVE and verdict.note is not None
    assert verdict.note.startswith(OVER_BUDGET) and "MAX_ESTIMATED_COST" in verdict.note


def test_the_runtime_meter_stops_an_evaluation_and_disables_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = threshold("memstats.all(k, k != 'nothing') && goroutines > 1")
    assert rule.observe(sample(), started_at=0.0).state != INACTIVE
    monkeypatch.setattr(cel_cost, "MAX_STEPS", 20)
    verdict = rule.observe(sample(1010.0), started_at=0.0)
    assert verdict.state == INACTIVE and verdict.note is not None
    assert verdict.note.startswith(OVER_BUDGET) and "MAX_STEPS" in verdict.note
    monkeypatch.setattr(cel_cost, "MAX_STEPS", 20_000)
    assert rule.observe(sample(1020.0), started_at=0.0).state == INACTIVE  # stays off for this target


def test_the_time_budget_stops_a_slow_evaluation() -> None:
    tree = celpy.Environment().compile(BOMB)
    runner = celpy.Environment().program(tree)
    started = time.perf_counter()
    with pytest.raises(cel_cost.CelBudgetError) as caught:
        cel_cost.evaluate(tree, runner.new_activation(), {}, max_steps=10**9, max_seconds=0.05)
    assert caught.value.limit_name == "MAX_EVAL_SECONDS"
    assert time.perf_counter() - started < 1.0


def test_the_step_budget_counts_macro_bodies() -> None:
    tree = celpy.Environment().compile(f"{TEN}.all(a, {TEN}.all(b, a + b > 0))")
    runner = celpy.Environment().program(tree)
    with pytest.raises(cel_cost.CelBudgetError) as caught:
        cel_cost.evaluate(tree, runner.new_activation(), {}, max_steps=100, max_seconds=10)
    assert caught.value.limit_name == "MAX_STEPS"
    assert cel_cost.evaluate(tree, runner.new_activation(), {}, max_steps=100_000, max_seconds=10)


def test_recursion_in_the_interpreter_disables_the_rule_instead_of_ending_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def mock_recursing_evaluate(*args: object, **kwargs: object) -> object:  # a mock: name says so
        raise RecursionError("maximum recursion depth exceeded")

    rule = threshold("goroutines > 1")
    monkeypatch.setattr(cel_cost, "evaluate", mock_recursing_evaluate)
    verdict = rule.observe(sample(), started_at=0.0)
    assert verdict.state == INACTIVE and verdict.note is not None and verdict.note.startswith(OVER_BUDGET)


def test_any_other_interpreter_failure_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    def mock_broken_evaluate(*args: object, **kwargs: object) -> object:  # a mock: celpy bugs are rare
        raise AttributeError("'NoneType' object has no attribute 'x'")

    rule = threshold("goroutines > 1")
    monkeypatch.setattr(cel_cost, "evaluate", mock_broken_evaluate)
    verdict = rule.observe(sample(), started_at=0.0)
    assert verdict.state == WATCHING and verdict.note is not None and "could not be evaluated" in verdict.note
