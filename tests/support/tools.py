"""Locating the pinned tools (helm, versitygw, kubectl, ...) that hack/build-tools builds from the Go module
proxy into a cache outside the checkout. A failed build fails the test with the build's own error."""

from __future__ import annotations

import functools
import pathlib
import shlex
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@functools.cache
def _tool_env() -> dict[str, str]:
    proc = subprocess.run(
        [str(REPO / "hack" / "build-tools"), "--env"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/build-tools --env failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    env = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition("=")
        if name and value:
            env[name] = shlex.split(value)[0]
    return env


def tool_path(name: str) -> pathlib.Path:
    """`tool_path("HELM")`: the binary hack/build-tools names on its `NAME=path` line (a no-op build when cached)."""
    env = _tool_env()
    if name not in env:
        pytest.fail(f"hack/build-tools --env printed no {name}= line (it printed: {', '.join(sorted(env))})")
    return pathlib.Path(env[name])
