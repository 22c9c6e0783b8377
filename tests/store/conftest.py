"""Fixtures for the store tests: a real S3 server (versitygw, built by hack/build-tools) on 127.0.0.1.

One versitygw serves the whole session (fresh root credentials, a temporary posix data directory); each test
gets its own bucket. Tests that stop the server mid-capture start their own with `s3_server_factory`.
Every server started here is stopped at teardown; none outlives the session.
"""

from __future__ import annotations

import pathlib
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from versitygw import REPO, S3Server


@pytest.fixture(scope="session")
def versitygw_binary() -> pathlib.Path:
    """The pinned versitygw, built from the Go module proxy by hack/build-tools (a no-op when cached)."""
    proc = subprocess.run(
        [str(REPO / "hack" / "build-tools"), "--env"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/build-tools --env failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    for line in proc.stdout.splitlines():
        name, _, value = line.partition("=")
        if name == "VERSITYGW":
            return pathlib.Path(shlex.split(value)[0])
    pytest.fail(f"hack/build-tools --env printed no VERSITYGW= line:\n{proc.stdout}")


@pytest.fixture
def s3_server_factory(
    versitygw_binary: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[Callable[[], S3Server]]:
    """Start a dedicated versitygw (for tests that stop it); all of them are stopped at teardown."""
    started: list[S3Server] = []

    def start() -> S3Server:
        server = S3Server(versitygw_binary, tmp_path / f"versitygw-{len(started)}")
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
