"""Read leak rules from `spec.rules` of a MemoryWatch (or a `watch --rules` YAML file) into RuleSpecs.

Errors: `ConfigError(ValueError)` carries `messages`, one per problem, each naming its path
(`rules[2].window: '15x' is not a duration ...`). Nothing else escapes `load_rules_yaml` or `rules_from_dicts`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import celpy
import pydantic
import yaml
from celpy.celparser import CELParseError

from memorywatch.api import units
from memorywatch.rules import cel_cost
from memorywatch.rules.model import RuleKind, RuleSpec

__all__ = ["ConfigError", "default_rules", "load_rules_yaml", "rules_from_dicts"]

MAX_RULES = 32
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_MAX = 63
_EXPRESSION_MAX = cel_cost.MAX_EXPRESSION_CHARS  # the CRD's maxLength
_KINDS = ", ".join(kind.value for kind in RuleKind)

# Bounds in seconds: (lowest, highest). A window below 10s cannot hold a trend; above a day the series cap
# (512 points per series) makes the resolution too coarse to be useful.
_DURATION_BOUNDS: Mapping[str, tuple[float, float]] = {
    "window": (10.0, 86_400.0),
    "horizon": (60.0, 7 * 86_400.0),
    "for": (0.0, 86_400.0),
    "warmup": (0.0, 86_400.0),
    "cooldown": (0.0, 7 * 86_400.0),
}

# Which optional fields mean something for which kinds; anything else is a mistake worth telling.
_TREND_KINDS = frozenset(
    {
        RuleKind.GOROUTINE_GROWTH,
        RuleKind.HEAP_GROWTH,
        RuleKind.FINALIZER_BACKLOG,
        RuleKind.NON_HEAP_GROWTH,
        RuleKind.MEMORY_LIMIT,
    }
)
_FIELD_KINDS: Mapping[str, frozenset[RuleKind]] = {
    "window": _TREND_KINDS,
    "minGrowth": _TREND_KINDS,
    "horizon": frozenset({RuleKind.MEMORY_LIMIT}),
    "expression": frozenset({RuleKind.THRESHOLD}),
    "for": frozenset({RuleKind.THRESHOLD}),
}


class ConfigError(ValueError):
    """The rules are not valid; `messages` holds one line per problem."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages: tuple[str, ...] = tuple(messages)
        super().__init__("; ".join(self.messages) if len(self.messages) != 1 else self.messages[0])


class _RuleModel(pydantic.BaseModel):
    """The wire shape of one rule; field names are the CRD's (camelCase)."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=False, frozen=True)

    name: str
    kind: RuleKind
    window: float | None = None
    min_growth: float | None = pydantic.Field(default=None, alias="minGrowth")
    for_: float | None = pydantic.Field(default=None, alias="for")
    expression: str | None = None
    horizon: float | None = None
    warmup: float | None = None
    cooldown: float | None = None

    @pydantic.field_validator("window", "for_", "horizon", "warmup", "cooldown", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        return None if value is None else units.parse_duration(value)

    @pydantic.field_validator("min_growth", mode="before")
    @classmethod
    def _parse_quantity(cls, value: Any) -> Any:
        return None if value is None else units.parse_quantity(value)

    @pydantic.field_validator("kind", mode="before")
    @classmethod
    def _check_kind(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in {kind.value for kind in RuleKind}:
            hint = difflib.get_close_matches(value, [kind.value for kind in RuleKind], n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"{value!r} is not a rule kind{suggestion}: use one of {_KINDS}")
        return value


_ALIASES = [field.alias or name for name, field in _RuleModel.model_fields.items()]


def _path_of(index: int, loc: Sequence[int | str]) -> str:
    path = f"rules[{index}]"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(index: int, error: Mapping[str, Any]) -> str:
    """One readable sentence for one pydantic error."""
    loc: Sequence[int | str] = error.get("loc", ())
    kind = error.get("type", "")
    if kind == "extra_forbidden" and loc:
        field = str(loc[-1])
        hint = difflib.get_close_matches(field, _ALIASES, n=1, cutoff=0.6)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"{_path_of(index, loc[:-1])}: unknown field {field!r}{suggestion}"
    path = _path_of(index, loc)
    if kind == "missing":
        return f"{path} is required"
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        return f"{path}: {cause if cause is not None else error.get('msg', 'invalid')}"
    if kind == "enum":
        return f"{path}: {error.get('input')!r} is not a rule kind: use one of {_KINDS}"
    if kind in {"string_type", "string_too_long"}:
        return f"{path}: expected a string"
    if kind == "model_type":
        return f"{path}: expected a mapping of fields such as name, kind and window"
    return f"{path}: {error.get('msg', 'invalid')}"


def _compile_problem(expression: str) -> str | None:
    """Why the CEL expression does not compile, or None when it does."""
    try:
        tree = celpy.Environment().compile(expression)
    except RecursionError:
        return (
            f"{expression[:60]!r}… is nested too deeply to compile (limit MAX_AST_DEPTH="
            f"{cel_cost.MAX_AST_DEPTH}): use fewer parentheses or shorter operator chains"
        )
    except CELParseError as error:
        where = f" at column {error.column}" if getattr(error, "column", None) else ""
        line = getattr(error, "line", None)
        if line and line > 1:
            where = f" at line {line}{', column ' + str(error.column) if error.column else ''}"
        return f"{expression!r} is not a valid CEL expression: syntax error{where}"
    problem = cel_cost.static_problem(expression, tree)
    if problem is not None:
        return f"over the CEL budget: the expression {problem} (limit {problem.limit_name})"
    return None


def _cross_field_problems(index: int, item: Mapping[str, Any], rule: _RuleModel) -> list[str]:
    problems: list[str] = []
    path = f"rules[{index}]"
    if not _NAME.match(rule.name) or len(rule.name) > _NAME_MAX:
        problems.append(
            f"{path}.name: {rule.name!r} must be a lowercase DNS label"
            " (a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters)"
        )
    for field, kinds in _FIELD_KINDS.items():
        if item.get(field) is not None and rule.kind not in kinds:
            allowed = " or ".join(kind.value for kind in RuleKind if kind in kinds)
            problems.append(f"{path}.{field} applies only to kind {allowed}, not {rule.kind.value}")
    values = {
        "window": rule.window,
        "horizon": rule.horizon,
        "for": rule.for_,
        "warmup": rule.warmup,
        "cooldown": rule.cooldown,
    }
    for field, value in values.items():
        if value is None:
            continue
        low, high = _DURATION_BOUNDS[field]
        if not low <= value <= high:
            problems.append(
                f"{path}.{field}: {units.format_duration(value)} is out of range:"
                f" it must be between {units.format_duration(low)} and {units.format_duration(high)}"
            )
    if rule.min_growth is not None and rule.min_growth <= 0:
        problems.append(f"{path}.minGrowth must be greater than 0")
    if rule.kind is RuleKind.THRESHOLD:
        if rule.expression is None or not rule.expression.strip():
            problems.append(f"{path}.expression is required for kind Threshold")
        elif len(rule.expression) > _EXPRESSION_MAX:
            problems.append(f"{path}.expression must be at most {_EXPRESSION_MAX} characters")
        else:
            problem = _compile_problem(rule.expression)
            if problem is not None:
                problems.append(f"{path}.expression: {problem}")
    return problems


def rules_from_dicts(items: Iterable[Any]) -> list[RuleSpec]:
    """Validate rule dicts (CR `spec.rules` entries or parsed YAML) and turn them into RuleSpecs.

    Raises ConfigError listing every problem found, not just the first.
    """
    if isinstance(items, Mapping | str | bytes):
        raise ConfigError(["rules: expected a list of rules, each a mapping with name and kind"])
    problems: list[str] = []
    specs: list[RuleSpec] = []
    seen: dict[str, int] = {}
    materialised = list(items)
    if len(materialised) > MAX_RULES:
        problems.append(f"rules: at most {MAX_RULES} rules are allowed, got {len(materialised)}")
    for index, item in enumerate(materialised):
        try:
            rule = _RuleModel.model_validate(item)
        except pydantic.ValidationError as error:
            problems.extend(_describe(index, detail) for detail in error.errors())
            continue
        item_problems = _cross_field_problems(index, item, rule)
        if rule.name in seen:
            item_problems.append(
                f"rules[{index}].name: {rule.name!r} is already used by rules[{seen[rule.name]}]"
            )
        else:
            seen[rule.name] = index
        if item_problems:
            problems.extend(item_problems)
            continue
        specs.append(
            RuleSpec(
                name=rule.name,
                kind=rule.kind,
                window_seconds=rule.window,
                min_growth=rule.min_growth,
                for_seconds=rule.for_,
                expression=rule.expression,
                horizon_seconds=rule.horizon,
                warmup_seconds=rule.warmup,
                cooldown_seconds=rule.cooldown,
            )
        )
    if problems:
        raise ConfigError(problems)
    return specs


def load_rules_yaml(text: str) -> list[RuleSpec]:
    """Rules from a YAML document: a list of rules, or a mapping with a `rules:` list (a MemoryWatch spec)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "malformed"
        raise ConfigError([f"rules: not valid YAML{where}: {problem}"]) from None
    if document is None:
        raise ConfigError(["rules: the document is empty; expected a list of rules"])
    if isinstance(document, Mapping):
        spec = document.get("spec") if isinstance(document.get("spec"), Mapping) else document
        if not isinstance(spec, Mapping) or "rules" not in spec:
            raise ConfigError(["rules: expected a list of rules (or a mapping with a 'rules' list)"])
        document = spec["rules"]
    if not isinstance(document, list):
        raise ConfigError(["rules: expected a list of rules, each a mapping with name and kind"])
    return rules_from_dicts(document)


def default_rules() -> list[RuleSpec]:
    """The built-in set used when a MemoryWatch has no `rules` (product.md); no Threshold rule."""
    return rules_from_dicts(
        [
            {"name": "goroutine-leak", "kind": "GoroutineGrowth", "window": "15m", "minGrowth": "2000"},
            {"name": "heap-growth", "kind": "HeapGrowth", "window": "30m", "minGrowth": "256Mi"},
            {"name": "finalizer-backlog", "kind": "FinalizerBacklog", "window": "15m"},
            {"name": "non-heap-growth", "kind": "NonHeapGrowth", "window": "30m", "minGrowth": "256Mi"},
            {"name": "near-limit", "kind": "MemoryLimit", "horizon": "30m"},
        ]
    )
