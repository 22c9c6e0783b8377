"""We test reading rules the way a user writes them (YAML for `watch --rules`, dicts from a MemoryWatch
spec): valid rules become RuleSpecs with seconds and bytes, and every mistake gets one message naming its path."""

from __future__ import annotations

import pytest

from memorywatch.api.rules_config import ConfigError, default_rules, load_rules_yaml, rules_from_dicts
from memorywatch.rules.model import RuleKind, RuleSpec

PRODUCT_EXAMPLE = """
- {name: goroutine-leak, kind: GoroutineGrowth, window: 15m, minGrowth: "2000"}
- {name: heap-growth, kind: HeapGrowth, window: 30m, minGrowth: 256Mi}
- {name: finalizer-backlog, kind: FinalizerBacklog, window: 15m}
- {name: non-heap-growth, kind: NonHeapGrowth, window: 30m, minGrowth: 256Mi}
- {name: near-limit, kind: MemoryLimit, horizon: 30m}
- {name: big-sys, kind: Threshold, expression: "memstats.Sys > 4 * 1024 * 1024 * 1024", for: 5m}
"""


def test_the_product_example_loads() -> None:
    rules = load_rules_yaml(PRODUCT_EXAMPLE)
    assert [r.kind for r in rules] == list(RuleKind)
    assert rules[0] == RuleSpec(
        name="goroutine-leak", kind=RuleKind.GOROUTINE_GROWTH, window_seconds=900, min_growth=2000
    )
    assert rules[1].min_growth == 256 * 2**20
    assert rules[4].horizon_seconds == 1800
    assert rules[5].for_seconds == 300 and rules[5].expression == "memstats.Sys > 4 * 1024 * 1024 * 1024"


def test_a_memorywatch_spec_document_is_accepted_too() -> None:
    rules = load_rules_yaml("spec:\n  rules:\n  - {name: h, kind: HeapGrowth, warmup: 5m, cooldown: 1h}\n")
    assert rules == [RuleSpec(name="h", kind=RuleKind.HEAP_GROWTH, warmup_seconds=300, cooldown_seconds=3600)]


def test_default_rules_are_the_built_in_set() -> None:
    rules = default_rules()
    assert [(r.name, r.kind) for r in rules] == [
        ("goroutine-leak", RuleKind.GOROUTINE_GROWTH),
        ("heap-growth", RuleKind.HEAP_GROWTH),
        ("finalizer-backlog", RuleKind.FINALIZER_BACKLOG),
        ("non-heap-growth", RuleKind.NON_HEAP_GROWTH),
        ("near-limit", RuleKind.MEMORY_LIMIT),
    ]
    assert rules[0].window_seconds == 900 and rules[0].min_growth == 2000
    assert rules[4].horizon_seconds == 1800


UNIT_HINT = "use a number and a unit such as 30s, 15m or 1h (units: ns, us, ms, s, m, h)"


@pytest.mark.parametrize(
    ("items", "messages"),
    [
        (
            [
                {"name": "a", "kind": "HeapGrowth"},
                {"name": "b", "kind": "HeapGrowth"},
                {"name": "c", "kind": "HeapGrowth", "window": "15x"},
            ],
            [f"rules[2].window: '15x' is not a duration: {UNIT_HINT}"],
        ),
        (
            [{"name": "a", "kind": "HeapGrowth", "minGrowht": "1Gi"}],
            ["rules[0]: unknown field 'minGrowht' (did you mean 'minGrowth'?)"],
        ),
        (
            [{"name": "a", "kind": "GoroutineGrowth"}, {"name": "t", "kind": "Threshold"}],
            ["rules[1].expression is required for kind Threshold"],
        ),
        (
            [{"name": "t", "kind": "Threshold", "expression": "memstats.Sys >"}],
            [
                "rules[0].expression: 'memstats.Sys >' is not a valid CEL expression: syntax error at column 14"
            ],
        ),
        (
            [{"name": "a", "kind": "HeapGrowht"}],
            [
                "rules[0].kind: 'HeapGrowht' is not a rule kind (did you mean 'HeapGrowth'?): use one of"
                " GoroutineGrowth, HeapGrowth, FinalizerBacklog, NonHeapGrowth, MemoryLimit, Threshold"
            ],
        ),
        ([{"kind": "HeapGrowth"}], ["rules[0].name is required"]),
        ([{"name": "a"}], ["rules[0].kind is required"]),
        (
            [{"name": "Heap_Rule", "kind": "HeapGrowth"}],
            [
                "rules[0].name: 'Heap_Rule' must be a lowercase DNS label (a-z, 0-9 and '-', starting and ending"
                " with a letter or digit, at most 63 characters)"
            ],
        ),
        (
            [{"name": "a", "kind": "HeapGrowth"}, {"name": "a", "kind": "GoroutineGrowth"}],
            ["rules[1].name: 'a' is already used by rules[0]"],
        ),
        (
            [{"name": "a", "kind": "HeapGrowth", "horizon": "5m", "for": "1m", "expression": "true"}],
            [
                "rules[0].horizon applies only to kind MemoryLimit, not HeapGrowth",
                "rules[0].expression applies only to kind Threshold, not HeapGrowth",
                "rules[0].for applies only to kind Threshold, not HeapGrowth",
            ],
        ),
        (
            [{"name": "a", "kind": "HeapGrowth", "window": "1s", "minGrowth": "0"}],
            [
                "rules[0].window: 1s is out of range: it must be between 10s and 24h",
                "rules[0].minGrowth must be greater than 0",
            ],
        ),
        (
            [{"name": "a", "kind": "HeapGrowth", "minGrowth": "256MB"}],
            [
                "rules[0].minGrowth: '256MB' is not a quantity: use a number with an optional suffix such as 2000, 256Mi, 1Gi or 1.5G"
            ],
        ),
        (["heap"], ["rules[0]: expected a mapping of fields such as name, kind and window"]),
        ([{"name": 5, "kind": "HeapGrowth"}], ["rules[0].name: expected a string"]),
    ],
)
def test_each_problem_is_one_message_with_its_path(items: list[object], messages: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        rules_from_dicts(items)
    assert list(caught.value.messages) == messages
    assert isinstance(caught.value, ValueError)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        rules_from_dicts([{"kind": "HeapGrowth"}, {"name": "b", "kind": "HeapGrowth", "window": "soon"}])
    assert len(caught.value.messages) == 2
    assert str(caught.value) == "; ".join(caught.value.messages)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "rules: the document is empty; expected a list of rules"),
        ("name: a\nkind: HeapGrowth\n", "rules: expected a list of rules (or a mapping with a 'rules' list)"),
        (
            "- {name: a",
            "rules: not valid YAML at line 1, column 11: expected ',' or '}', but got '<stream end>'",
        ),
        ("just text", "rules: expected a list of rules, each a mapping with name and kind"),
    ],
)
def test_yaml_level_problems(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules_yaml(text)
    assert caught.value.messages == (message,)
