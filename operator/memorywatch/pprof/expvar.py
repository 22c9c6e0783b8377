"""The expvar endpoint (`/debug/vars`): the process's MemStats (Go field names) and command line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from memorywatch.pprof.errors import MalformedJSON
from memorywatch.pprof.memstats import GO_FIELDS, MemStats, convert_json_field

# Go's expvar prints `"Stack"`-style pairs as separate fields, unlike the heap text; BySize (61 size classes)
# and the fields MemStats does not model (PauseTotalNs, EnableGC) are ignored.


@dataclasses.dataclass(frozen=True)
class ExpvarSnapshot:
    """One read of /debug/vars. `memstats` is None when the process does not publish it (custom expvar setup)."""

    memstats: MemStats | None
    cmdline: tuple[str, ...] | None
    names: tuple[str, ...]


def parse_expvar(data: bytes) -> ExpvarSnapshot:
    """Parse a /debug/vars body. Raises MalformedJSON for anything that is not a JSON object."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError and undecodable bytes; RecursionError a pathologically nested body.
        raise MalformedJSON(data, type(e).__name__) from None
    if not isinstance(document, dict):
        raise MalformedJSON(data, f"the top level is a JSON {type(document).__name__}, not an object")
    return ExpvarSnapshot(
        memstats=_memstats(document.get("memstats")),
        cmdline=_cmdline(document.get("cmdline")),
        names=tuple(str(name) for name in document),
    )


def _memstats(raw: Any) -> MemStats | None:
    if not isinstance(raw, dict):
        return None
    values: dict[str, Any] = {
        attr: convert_json_field(attr, raw[name]) for name, attr in GO_FIELDS.items() if name in raw
    }
    return MemStats(**values)


def _cmdline(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, list) and all(isinstance(arg, str) for arg in raw):
        return tuple(raw)
    return None
