"""Running `memorywatch watch` as a user would: a subprocess, JSON lines out, a capture store on disk."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass
class WatchRun:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    store: pathlib.Path

    def of(self, kind: str, target: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind and (target is None or e["target"] == target)]

    def rules_fired(self, target: str) -> set[str]:
        return {e["rule"] for e in self.of("breach", target)}

    def explain(self) -> str:
        lines = [json.dumps(e) for e in self.events if e["event"] != "sample"]
        return "\n".join(lines[-40:]) + "\n--- stderr ---\n" + self.stderr[-3000:]


def memorywatch_cmd() -> list[str]:
    exe = shutil.which("memorywatch", path=str(pathlib.Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "memorywatch"]


def run_watch(args: Sequence[str], store: pathlib.Path, timeout_seconds: float) -> WatchRun:
    cmd = [*memorywatch_cmd(), "watch", "--output", "json", "--store", str(store), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_seconds, env=env, check=False)
    events = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line:
            events.append(json.loads(line))  # every stdout line must be JSON: that is the contract
    return WatchRun(proc.returncode, events, proc.stderr, store)


def go_tool_pprof_top(path: pathlib.Path, *extra: str) -> str:
    """`go tool pprof -top` on a captured file; fails the test with pprof's own words if it cannot open it."""
    proc = subprocess.run(
        ["go", "tool", "pprof", "-top", *extra, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"go tool pprof could not open {path}:\n{proc.stderr}"
    return proc.stdout
