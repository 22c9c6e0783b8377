"""Builds the real Go test target (tests/gotargets) once per source+toolchain and runs instances of it.

Errors: `GoTargetError` is the root; `GoTargetBuildError` (compiler output in `.output`) when `go build`
fails or Go is missing; `GoTargetStartError` (log tail in the message) when an instance does not answer
HTTP in time or exits during start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol

import httpx

MODULE_DIR = pathlib.Path(__file__).resolve().parent.parent / "gotargets"
BINARY_NAME = "gotarget"
DEFAULT_START_TIMEOUT_SECONDS = 10.0
DEFAULT_STOP_TIMEOUT_SECONDS = 5.0
PORT_ATTEMPTS = 3

FlagValue = str | int | float | bool | None


class GoTargetError(Exception):
    """Something went wrong building or running a Go target."""


class GoTargetBuildError(GoTargetError):
    """`go build` failed; `output` holds what the toolchain printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n{output}")
        self.output = output


class GoTargetStartError(GoTargetError):
    """The target exited or did not answer HTTP within the start timeout."""


def cache_root() -> pathlib.Path:
    """Where built targets live; outside the checkout so every clone and CI run can reuse them."""
    env = os.environ.get("MEMORYWATCH_CACHE")
    base = pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "memorywatch"
    return base / "gotargets"


def _go_version() -> str:
    try:
        done = subprocess.run(["go", "version"], capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise GoTargetBuildError(
            "cannot run `go version`; Go 1.22+ is needed to build the test targets", str(err)
        ) from err
    return done.stdout.strip()


def source_digest(go_version: str, module_dir: pathlib.Path = MODULE_DIR) -> str:
    """sha256 over every file of the module (path and content) plus the toolchain version."""
    digest = hashlib.sha256(go_version.encode())
    for path in sorted(p for p in module_dir.rglob("*") if p.is_file()):
        digest.update(b"\0" + path.relative_to(module_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_gotarget(module_dir: pathlib.Path = MODULE_DIR) -> pathlib.Path:
    """Return the path of a built `gotarget`, building it (CGO_ENABLED=1) only when not cached yet."""
    go_version = _go_version()
    out_dir = cache_root() / source_digest(go_version, module_dir)
    binary = out_dir / BINARY_NAME
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build under a unique name and rename, so a concurrent build or a killed one never leaves a torn binary.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{BINARY_NAME}-", dir=out_dir)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        env = {**os.environ, "CGO_ENABLED": "1"}
        done = subprocess.run(
            ["go", "build", "-o", str(tmp), "."],
            cwd=module_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise GoTargetBuildError(
                f"go build in {module_dir} failed ({go_version})", done.stdout + done.stderr
            )
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; the caller starts its server right away."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def flag_args(flags: Mapping[str, FlagValue]) -> list[str]:
    """`leak_after="2s"` -> `-leak-after=2s`; True -> bare flag; False/None -> omitted."""
    args: list[str] = []
    for key, value in flags.items():
        name = "-" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(name)
        else:
            args.append(f"{name}={value}")
    return args


class GoTarget:
    """One running `gotarget` process on 127.0.0.1; also a context manager that stops it on exit.

    `flags` are gotarget's own flags with underscores for dashes (e.g. `leak_after="1s"`, `expvar=True`).
    stdout and stderr go to `log_path`, which survives the process for debugging.
    """

    def __init__(
        self,
        binary: pathlib.Path,
        mode: str = "healthy",
        *,
        rate: float | None = None,
        log_dir: pathlib.Path | None = None,
        port: int | None = None,
        start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS,
        **flags: FlagValue,
    ) -> None:
        if "listen" in flags:
            raise ValueError("GoTarget chooses the listen address itself; pass port= to pin one")
        self.binary = binary
        self.mode = mode
        self.flags: dict[str, FlagValue] = {"mode": mode, "rate": rate, **flags}
        self._port_pinned = port is not None
        self._answered = False
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.start_timeout_seconds = start_timeout_seconds
        log_dir = log_dir if log_dir is not None else pathlib.Path(tempfile.mkdtemp(prefix="gotarget-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"gotarget-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.returncode: int | None = None
        """Exit code of the last process that stopped (negative: killed by that signal)."""

    @property
    def scheme(self) -> str:
        return "https" if self.flags.get("tls_cert") else "http"

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def prefix(self) -> str:
        value = self.flags.get("prefix")
        return str(value).rstrip("/") if value else "/debug/pprof"

    @property
    def pprof_url(self) -> str:
        """The pprof index page URL under the configured prefix, with its trailing slash."""
        return f"{self.url}{self.prefix}/"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise GoTargetError("target is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def args(self) -> list[str]:
        return [str(self.binary), f"-listen={self.host}:{self.port}", *flag_args(self.flags)]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> GoTarget:
        """Start the process and block until it answers HTTP (any status: a token may make it 401).

        A first start on a port chosen here moves to another free port if something else grabbed it
        in the meantime; restarts and pinned ports never move.
        """
        if self.running:
            raise GoTargetError(f"target already running as pid {self.pid}")
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._start_once()
            except GoTargetStartError as err:
                movable = not self._port_pinned and not self._answered
                if not movable or "address already in use" not in str(err) or attempt == PORT_ATTEMPTS - 1:
                    raise
                self.port = free_port()
                continue
            self._answered = True
            break
        return self

    def _start_once(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts}: {' '.join(self.args)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_seconds
        last_error = "no attempt yet"
        # verify=False only for this liveness probe: the tests that care about TLS check it themselves.
        with httpx.Client(verify=False, timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                assert self._process is not None
                code = self._process.poll()
                if code is not None:
                    raise GoTargetStartError(
                        f"gotarget exited with {code} during start-up:\n{self._log_tail()}"
                    )
                try:
                    client.get(self.pprof_url)
                    return
                except httpx.TransportError as err:
                    last_error = repr(err)
                time.sleep(0.05)
        raise GoTargetStartError(
            f"gotarget did not answer on {self.pprof_url} within {self.start_timeout_seconds}s "
            f"({last_error}):\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout_seconds: float = DEFAULT_STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the timeout. Safe to call twice."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.returncode = process.returncode
        self._process = None

    def kill(self) -> None:
        """SIGKILL without grace, as a crashing or OOM-killed service would go."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=DEFAULT_STOP_TIMEOUT_SECONDS)
        self.returncode = process.returncode
        self._process = None

    def restart(self) -> GoTarget:
        """Kill the process and start a fresh one on the same port: a new pid, state from zero."""
        self.kill()
        return self.start()

    def __enter__(self) -> GoTarget:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._process.pid}" if self._process is not None else "stopped"
        return f"GoTarget({self.mode!r}, {self.url}, {state})"


class GoTargetFactory(Protocol):
    """The `gotarget` fixture: starts a target with these flags and returns it running."""

    def __call__(self, mode: str = "healthy", rate: float | None = None, **flags: FlagValue) -> GoTarget: ...
