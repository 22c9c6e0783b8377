"""What a Threshold rule's CEL expression may cost, checked twice as Kubernetes does for its own CEL: a static
estimate when the rules are loaded, and a step and time meter on every evaluation. Pure: no I/O.

cel-python 0.5.0 has no cost tracking of its own, so the meter counts the interpreter's node visits
(`Evaluator.visit_children`, called for every node it evaluates, macro bodies included) and stops the
evaluation when the steps or the time run out. An expression over budget is refused at load when the
estimate already says so, and otherwise disabled for that target the first time it runs over.

Limits (module constants, documented in docs/security.md and docs/rules.md):
- `MAX_EXPRESSION_CHARS = 1024`: the CRD's own maxLength.
- `MAX_AST_DEPTH = 200`: nodes from the root to the deepest leaf. Each CEL nesting level (a parenthesis,
  an operator in a chain, a macro) adds ~10 nodes, and the interpreter recurses ~3 Python frames per node,
  so this stays well inside Python's recursion limit; deeper expressions raised RecursionError before.
- `MAX_ESTIMATED_COST = 10_000`: the static estimate, in node visits; macros over a literal list multiply
  their body's cost by the list's length, over anything else by `ASSUMED_COLLECTION_SIZE` (64: the
  `memstats` map has ~30 entries, and the activation holds no longer collection).
- `MAX_STEPS = 20_000` node visits and `MAX_EVAL_SECONDS = 0.1` per evaluation: a normal threshold costs
  a few dozen steps and well under a millisecond.
"""

from __future__ import annotations

import time
from typing import Any

import lark
from celpy import celtypes
from celpy.evaluation import Activation, Evaluator

MAX_EXPRESSION_CHARS = 1024
MAX_AST_DEPTH = 200
MAX_ESTIMATED_COST = 10_000
ASSUMED_COLLECTION_SIZE = 64
MAX_STEPS = 20_000
MAX_EVAL_SECONDS = 0.1

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_CHECK_CLOCK_EVERY = 128


class CelBudgetError(Exception):
    """An expression costs more than a limit allows. `limit_name` names it, `limit` is its value."""

    def __init__(self, message: str, limit_name: str, limit: float) -> None:
        super().__init__(message)
        self.limit_name = limit_name
        self.limit = limit


def ast_depth(tree: lark.Tree[Any]) -> int:
    """The deepest path from `tree` to a leaf, without recursion (a hostile tree may be very deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, lark.Tree):
            stack.extend((child, depth + 1) for child in node.children)
    return deepest


def _unwrap(node: Any) -> Any:
    """Through the single-child wrapper nodes (expr -> conditionalor -> ... -> primary)."""
    while isinstance(node, lark.Tree) and len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
        if node.data in ("list_lit", "map_lit"):
            break
        node = node.children[0]
    return node


def _macro(node: lark.Tree[Any]) -> tuple[Any, str, list[Any]] | None:
    """(target, macro name, argument exprs) when `node` is `target.macro(args...)`."""
    if node.data != "member_dot_arg" or len(node.children) < 2:
        return None
    target, name = node.children[0], node.children[1]
    if not isinstance(name, lark.Token) or str(name) not in MACROS:
        return None
    args = (
        node.children[2].children
        if len(node.children) > 2 and isinstance(node.children[2], lark.Tree)
        else []
    )
    return target, str(name), list(args)


def collection_size(node: Any) -> int:
    """How many elements `node` yields when a macro iterates it: a literal's length, a map()/filter() its
    source's size, anything else ASSUMED_COLLECTION_SIZE."""
    node = _unwrap(node)
    if isinstance(node, lark.Tree):
        if node.data in ("list_lit", "map_lit"):
            items = node.children[0] if node.children and isinstance(node.children[0], lark.Tree) else None
            return len(items.children) if items is not None else 0
        macro = _macro(node)
        if macro is not None and macro[1] in ("map", "filter"):
            return collection_size(macro[0])
    return ASSUMED_COLLECTION_SIZE


def estimated_cost(node: Any) -> int:
    """Node visits an evaluation may take, macros multiplied by what they iterate. Call only on trees
    within MAX_AST_DEPTH (it recurses)."""
    if not isinstance(node, lark.Tree):
        return 0
    macro = _macro(node)
    if macro is not None:
        target, _, args = macro
        body = sum(estimated_cost(arg) for arg in args[1:])
        return 1 + estimated_cost(target) + collection_size(target) * (1 + body)
    return 1 + sum(estimated_cost(child) for child in node.children)


def static_problem(expression: str, tree: lark.Tree[Any]) -> CelBudgetError | None:
    """Why `expression` (compiled to `tree`) is over budget before it ever runs, or None."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        return CelBudgetError(
            f"is {len(expression)} characters long; at most {MAX_EXPRESSION_CHARS} are allowed",
            "MAX_EXPRESSION_CHARS",
            MAX_EXPRESSION_CHARS,
        )
    depth = ast_depth(tree)
    if depth > MAX_AST_DEPTH:
        return CelBudgetError(
            f"is nested too deeply (syntax tree depth {depth}, at most {MAX_AST_DEPTH}): fewer parentheses"
            " or shorter operator chains",
            "MAX_AST_DEPTH",
            MAX_AST_DEPTH,
        )
    cost = estimated_cost(tree)
    if cost > MAX_ESTIMATED_COST:
        return CelBudgetError(
            f"may cost about {cost} evaluation steps per sample, over the budget of {MAX_ESTIMATED_COST}"
            " (macros such as all() over literal lists multiply): simplify it",
            "MAX_ESTIMATED_COST",
            MAX_ESTIMATED_COST,
        )
    return None


class _Meter:
    def __init__(self, max_steps: int, max_seconds: float) -> None:
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.steps = 0
        self.started = time.perf_counter()
        self.exceeded: CelBudgetError | None = None

    def tick(self) -> None:
        if self.exceeded is not None:
            raise self.exceeded
        self.steps += 1
        if self.steps > self.max_steps:
            self.exceeded = CelBudgetError(
                f"took more than {self.max_steps} evaluation steps", "MAX_STEPS", self.max_steps
            )
            raise self.exceeded
        if self.steps % _CHECK_CLOCK_EVERY == 0 and time.perf_counter() - self.started > self.max_seconds:
            self.exceeded = CelBudgetError(
                f"took more than {self.max_seconds:g}s to evaluate", "MAX_EVAL_SECONDS", self.max_seconds
            )
            raise self.exceeded


class _MeteredEvaluator(Evaluator):
    """celpy's interpreter, counting every node it visits against a shared meter."""

    def __init__(self, ast: lark.Tree[Any], activation: Activation, meter: _Meter) -> None:
        super().__init__(ast, activation=activation)
        self._meter = meter

    def visit_children(self, tree: lark.Tree[Any]) -> Any:
        self._meter.tick()
        return super().visit_children(tree)

    def sub_evaluator(self, ast: lark.Tree[Any]) -> Evaluator:
        return _MeteredEvaluator(ast, self.activation, self._meter)


def evaluate(
    ast: lark.Tree[Any],
    base_activation: Activation,
    variables: dict[str, Any],
    *,
    max_steps: int | None = None,
    max_seconds: float | None = None,
) -> celtypes.Value:
    """Evaluate `ast` like celpy's InterpretedRunner, within the step and time budget. Raises
    CelBudgetError when over it (even if celpy caught the stop on the way and made a value of it), and
    otherwise whatever celpy raises (CELEvalError, RecursionError, ...)."""
    meter = _Meter(
        MAX_STEPS if max_steps is None else max_steps,
        MAX_EVAL_SECONDS if max_seconds is None else max_seconds,
    )
    evaluator = _MeteredEvaluator(ast, base_activation, meter)
    try:
        value = evaluator.evaluate(variables)
    except Exception:
        if meter.exceeded is not None:
            raise meter.exceeded from None
        raise
    if meter.exceeded is not None:
        raise meter.exceeded
    return value
