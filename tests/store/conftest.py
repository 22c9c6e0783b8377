"""Fixtures for the store tests: a real S3 server (versitygw, built by hack/build-tools) on 127.0.0.1.

One versitygw serves the whole session (fresh root credentials, a temporary posix data directory); each test
gets its own bucket. Tests that stop the server mid-capture start their own with `s3_server_factory`.
Every server started here is stopped at teardown; none outlives the session.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.tools import tool_path

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from versitygw import S3Server


@pytest.fixture(scope="session")
def versitygw_binary() -> pathlib.Path:
    """The pinned versitygw, built from the Go module proxy by hack/build-tools (a no-op when cached)."""
    return tool_path("VERSITYGW")


@pytest.fixture
def s3_server_factory(
    versitygw_binary: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[Callable[..., S3Server]]:
    """Start a dedicated versitygw (for tests that stop it); all of them are stopped at teardown."""
    started: list[S3Server] = []

    def start(**settings: Any) -> S3Server:
        server = S3Server(versitygw_binary, tmp_path / f"versitygw-{len(started)}", **settings)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(versitygw_binary: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(versitygw_binary, tmp_path_factory.mktemp("versitygw")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on the session's server."""
    return s3_server.create_bucket()
