"""A dataclass field whose value may be given as a function, computed on first read (`Lazy`).

The growth every status line shows is a Theil–Sen slope (trend.py), the costliest statistic of a window that
fails fast; only the `watch` CLI renders it for every sample, the operator when it writes a status. So
`Trend.slope_per_second`, `Trend.growth`, `Verdict.growth` and `RuleStatus.growth` accept a zero-argument
function: it runs on the first read of the field (an attribute access, equality, repr, `dataclasses.replace`)
and its result is kept, so every reader sees one value, the value an eager computation gives.

The function must depend only on data that no longer changes (the window's copied columns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

V = TypeVar("V")

_REQUIRED: Any = object()


class Lazy(Generic[V]):
    """A data descriptor for a field of a (frozen) dataclass: set to a value or to a function of no
    arguments giving that value. `Lazy()` makes the field required, `Lazy(default)` gives it a default."""

    __slots__ = ("_default", "_slot")

    def __init__(self, default: V = _REQUIRED) -> None:
        self._default = default
        self._slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_lazy_{name}"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> V: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> V: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> V:
        if obj is None:  # the dataclass asks for the default
            if self._default is _REQUIRED:
                raise AttributeError(self._slot)
            return self._default
        stored: V | Callable[[], V] = obj.__dict__[self._slot]
        if callable(stored):
            value = stored()
            obj.__dict__[self._slot] = value  # kept: the field is read-only to everyone else
            return value
        return stored

    def __set__(self, obj: object, value: V | Callable[[], V]) -> None:
        obj.__dict__[self._slot] = value
