"""Shared pytest fixtures: the real Go target binary, a factory of running targets, recorded fixtures."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from support.gotargets import FlagValue, GoTarget, GoTargetFactory, build_gotarget

FIXTURES_DIR = pathlib.Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def gotarget_binary() -> pathlib.Path:
    """The built `gotarget`, compiled once per source and Go version and cached across runs."""
    return build_gotarget()


@pytest.fixture
def gotarget(gotarget_binary: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[GoTargetFactory]:
    """Factory: `gotarget(mode="heap-leak", rate=..., **flags)` starts a target and returns it running.

    Every target started here is stopped at teardown, whatever the test's outcome; its log path is
    printed so a failing test shows where the target's stdout/stderr went.
    """
    started: list[GoTarget] = []

    def start(mode: str = "healthy", rate: float | None = None, **flags: FlagValue) -> GoTarget:
        # flags may also carry GoTarget's own keywords (port=, start_timeout_seconds=), hence the ignore.
        target = GoTarget(gotarget_binary, mode, rate=rate, log_dir=tmp_path / "gotargets", **flags)  # type: ignore[arg-type]
        started.append(target)
        return target.start()

    yield start
    for target in started:
        target.stop()
        print(f"gotarget log: {target.log_path}")


@pytest.fixture(scope="session")
def go_fixtures_dir() -> pathlib.Path:
    """Profiles recorded from the real targets with Go 1.26 (see tests/fixtures/go1.26/README.md)."""
    return FIXTURES_DIR / "go1.26"
