"""Threshold: a user's CEL expression over the latest sample that must hold continuously for `for`.

Variables: `memstats` (a map of Go field names to numbers: `memstats.Sys`, `memstats.HeapAlloc`, ...),
`goroutines`, `heapLive`, `heapLiveObjects`, `rss`, `limit`, `threads`, `finalizerBacklog`. Values are CEL
ints (GCCPUFraction is a double), so ratios need `double(rss) / double(limit) > 0.9`. A variable the target
did not report is left out of the activation, so `has(memstats.Sys)` works and a bare use of a missing one is
an evaluation error: no breach, a note saying why, never an exception.

Cost: the expression is checked against `cel_cost`'s static budget when the rule is built (an expression
over it is inactive from the start), and every evaluation runs under a step and time meter. An evaluation
over budget, or one that recurses too deep, disables the rule for this target: it stays INACTIVE with a
note naming the limit (`OVER_BUDGET` starts the note, so the engine can report it as a fault).
"""

from __future__ import annotations

from typing import Any

import celpy
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from memorywatch.api import units
from memorywatch.rules import cel_cost
from memorywatch.rules.base import FIRING, INACTIVE, WATCHING, Rule, Verdict
from memorywatch.rules.model import RuleSpec
from memorywatch.samples import Sample

_EVALUATION_ERRORS = (CELEvalError, ArithmeticError, LookupError, TypeError, ValueError)
OVER_BUDGET = "Threshold disabled, over its CEL budget"


def _number(value: int | float | bool) -> celtypes.Value:
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    return celtypes.DoubleType(value)


def activation(sample: Sample) -> dict[str, Any]:
    """The CEL variables for one sample; unreported values are absent, not zero."""
    variables: dict[str, Any] = {}
    if sample.memstats is not None:
        fields: dict[celtypes.Value, celtypes.Value] = {}
        for name, value in sample.memstats.go_fields().items():
            if isinstance(value, list):
                fields[celtypes.StringType(name)] = celtypes.ListType([celtypes.IntType(v) for v in value])
            else:
                fields[celtypes.StringType(name)] = _number(value)
        variables["memstats"] = celtypes.MapType(fields)
    scalars: dict[str, int | None] = {
        "goroutines": sample.goroutines,
        "heapLive": sample.heap_live_bytes,
        "heapLiveObjects": sample.heap_live_objects,
        "rss": sample.rss_bytes,
        "limit": sample.limit_bytes,
        "threads": sample.threads,
    }
    if sample.finalizers_queued is not None and sample.finalizers_executed is not None:
        scalars["finalizerBacklog"] = sample.finalizers_queued - sample.finalizers_executed
    for name, scalar in scalars.items():
        if scalar is not None:
            variables[name] = celtypes.IntType(scalar)
    return variables


def _explain(error: Exception) -> str:
    text = str(error.args[0]) if error.args else str(error)
    if "no such member" in text or "undeclared reference" in text:
        return f"a value it uses is not reported by this target ({text.split('(')[0].strip()}); guard it with has()"
    if "no matching overload" in text:
        return "it mixes int and double (CEL does not convert): write double(x) for ratios"
    return text.splitlines()[0][:200]


class Threshold(Rule):
    unit = ""

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.for_seconds = spec.for_seconds or 0.0
        self._program: celpy.Runner | None = None
        self._ast: Any = None
        self._compile_note: str | None = None
        self._true_since: float | None = None
        expression = spec.expression or ""
        try:
            environment = celpy.Environment()
            ast = environment.compile(expression)
        except CELParseError as error:
            self._compile_note = (
                f"Threshold inactive: {expression!r} does not compile (column {error.column})"
            )
            return
        except RecursionError:
            self._compile_note = f"{OVER_BUDGET}: the expression is nested too deeply to compile"
            return
        problem = cel_cost.static_problem(expression, ast)
        if problem is not None:
            self._compile_note = f"{OVER_BUDGET}: it {problem} (limit {problem.limit_name})"
            return
        self._ast = ast
        self._program = environment.program(ast)

    def reset(self) -> None:
        self._true_since = None

    def _disable(self, note: str) -> Verdict:
        """Stop evaluating for this target: the expression will cost as much on the next sample."""
        self._program = None
        self._ast = None
        self._true_since = None
        self._compile_note = note
        return Verdict(INACTIVE, note=note)

    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        del started_at  # a threshold needs no history beyond `for`
        if self._program is None:
            return Verdict(INACTIVE, note=self._compile_note)
        try:
            result = cel_cost.evaluate(self._ast, self._program.new_activation(), activation(sample))
        except cel_cost.CelBudgetError as error:
            return self._disable(f"{OVER_BUDGET}: the expression {error} (limit {error.limit_name})")
        except RecursionError:
            return self._disable(f"{OVER_BUDGET}: the expression recursed too deeply (limit: Python's stack)")
        except _EVALUATION_ERRORS as error:
            self._true_since = None
            return Verdict(WATCHING, note=f"Threshold could not be evaluated: {_explain(error)}")
        except Exception as error:  # noqa: BLE001 - celpy is an interpreter over user input: nothing it raises ends a loop
            self._true_since = None
            detail = str(error).splitlines()[0][:160] if str(error) else ""
            return Verdict(
                WATCHING, note=f"Threshold could not be evaluated: {type(error).__name__}: {detail}"
            )
        if not isinstance(result, celtypes.BoolType):
            self._true_since = None
            return Verdict(WATCHING, note=f"Threshold expression gave {type(result).__name__}, not a bool")
        if not result:
            self._true_since = None
            return Verdict(WATCHING)
        if self._true_since is None:
            self._true_since = sample.time
        held_seconds = sample.time - self._true_since
        if held_seconds + 1e-6 < self.for_seconds:
            return Verdict(WATCHING, evidence={"held_seconds": held_seconds})
        held = f" for {units.format_duration(held_seconds)}" if held_seconds > 0 else ""
        message = f"The expression `{self.spec.expression}` has held{held} (configured for: {units.format_duration(self.for_seconds)})."
        evidence = {
            "expression": self.spec.expression,
            "for_seconds": self.for_seconds,
            "held_seconds": held_seconds,
            "true_since": self._true_since,
            "values": _plain(activation(sample)),
        }
        return Verdict(FIRING, message=message, evidence=evidence)


def _plain(variables: dict[str, Any]) -> dict[str, Any]:
    """The activation as JSON (memstats without the long PauseNs/PauseEnd arrays)."""
    out: dict[str, Any] = {}
    for name, value in variables.items():
        if isinstance(value, celtypes.MapType):
            out[name] = {str(k): _scalar(v) for k, v in value.items() if not isinstance(v, celtypes.ListType)}
        else:
            out[name] = _scalar(value)
    return out


def _scalar(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    return str(value)
