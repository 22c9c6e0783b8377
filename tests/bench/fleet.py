"""Builds the Go fleet simulator (tests/fleetsim) and the minimal Go scraper once per source+toolchain,
and runs a fleet: one process serving thousands of simulated Go targets on loopback addresses.

    with Fleet(build_fleetsim(), count=1000, metrics_fraction=0.0) as fleet:
        fleet.targets      # [FleetTarget(addr="127.0.0.1:40123", kind="heap-leak", metrics=False), ...]
        fleet.counts()     # {"127.0.0.1:40123": {"index": 3, "heap": 3, ...}, ...}

Errors: `FleetError` (from tests/support/gotargets' tree: build failures are `GoTargetBuildError`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from types import TracebackType

import httpx

from support.gotargets import GoTargetBuildError, GoTargetError, _go_version, source_digest

MODULE_DIR = pathlib.Path(__file__).resolve().parent.parent / "fleetsim"
START_TIMEOUT_SECONDS = 120.0  # thousands of listeners on a loaded machine


class FleetError(GoTargetError):
    """The fleet simulator did not start, or its control address did not answer."""


@dataclasses.dataclass(frozen=True)
class Binaries:
    fleetsim: pathlib.Path
    goscraper: pathlib.Path


def cache_root() -> pathlib.Path:
    env = os.environ.get("MEMORYWATCH_CACHE")
    base = pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "memorywatch"
    return base / "fleetsim"


def build_fleetsim(module_dir: pathlib.Path = MODULE_DIR) -> Binaries:
    """Both binaries of the module, built only when not cached for this source digest and toolchain."""
    go_version = _go_version()
    out_dir = cache_root() / source_digest(go_version, module_dir)
    done = Binaries(out_dir / "fleetsim", out_dir / "goscraper")
    if all(p.is_file() and os.access(p, os.X_OK) for p in (done.fleetsim, done.goscraper)):
        return done
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        result = subprocess.run(
            ["go", "build", "-o", str(tmp) + "/", "./..."],
            cwd=module_dir,
            env={**os.environ, "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise GoTargetBuildError(
                f"go build in {module_dir} failed ({go_version})", result.stdout + result.stderr
            )
        for name in (
            "fleetsim",
            "goscraper",
        ):  # rename: a concurrent or killed build never leaves a torn binary
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


@dataclasses.dataclass(frozen=True)
class FleetTarget:
    addr: str
    kind: str
    metrics: bool

    @property
    def url(self) -> str:
        return f"http://{self.addr}"


class Fleet:
    """One running fleetsim process; a context manager that stops it on exit.

    `count`/`first_ip`/`ips`/`port` lay out the addresses (see tests/fleetsim/main.go), or `addresses` gives
    them exactly (`host:port` or `host:port kind`). `argv_prefix` (e.g. `["taskset", "-c", "1"]`) wraps the
    command; `extra` are more fleetsim flags (`{"records": 120}` -> `-records=120`).
    """

    def __init__(
        self,
        binaries: Binaries,
        *,
        count: int = 100,
        first_ip: str = "127.0.0.1",
        ips: int = 1,
        port: int = 0,
        addresses: Sequence[str] | None = None,
        metrics_fraction: float = 1.0,
        speed: float = 1.0,
        mix: str | None = None,
        argv_prefix: Sequence[str] = (),
        extra: dict[str, str | int | float] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.binaries = binaries
        self._tmp = pathlib.Path(tempfile.mkdtemp(prefix="fleetsim-"))
        args = [str(binaries.fleetsim), f"-metrics-fraction={metrics_fraction}", f"-speed={speed}"]
        if addresses is not None:
            addr_file = self._tmp / "addresses"
            addr_file.write_text("\n".join(addresses) + "\n")
            args.append(f"-addr-file={addr_file}")
        else:
            args += [f"-count={count}", f"-first-ip={first_ip}", f"-ips={ips}", f"-port={port}"]
        if mix is not None:
            args.append(f"-mix={mix}")
        args += [f"-{k.replace('_', '-')}={v}" for k, v in (extra or {}).items()]
        self.argv = [*argv_prefix, *args]
        self._env = {**os.environ, **(env or {})}
        self._process: subprocess.Popen[str] | None = None
        self.control = ""
        self.targets: list[FleetTarget] = []
        self.log_path = self._tmp / "fleetsim.log"

    def start(self) -> Fleet:
        with self.log_path.open("w") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=self._env,
            )
        assert self._process.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(START_TIMEOUT_SECONDS)
        if not line or not line[0]:
            self.stop()
            raise FleetError(f"fleetsim did not start ({' '.join(self.argv[:4])} ...): {self.log_tail()}")
        hello = json.loads(line[0])
        self.control = hello["control"]
        self.targets = [FleetTarget(t["addr"], t["kind"], t["metrics"]) for t in hello["targets"]]
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise FleetError("fleetsim is not running")
        return self._process.pid

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def counts(self) -> dict[str, dict[str, int]]:
        """Scrapes per target (`host:port`) and endpoint: index, heap, metrics, goroutine, profile, other."""
        try:
            answer = httpx.get(f"http://{self.control}/counts", timeout=30, trust_env=False)
            answer.raise_for_status()
        except httpx.HTTPError as err:
            raise FleetError(f"fleetsim control {self.control}: {err}") from err
        counts: dict[str, dict[str, int]] = answer.json()
        return counts

    def add(self, lines: Sequence[str]) -> list[FleetTarget]:
        """Serve more targets while running (`host:port` or `host:port kind` each)."""
        answer = httpx.post(
            f"http://{self.control}/targets", content="\n".join(lines), timeout=60, trust_env=False
        )
        if answer.status_code != 200:
            raise FleetError(f"fleetsim refused targets: {answer.text.strip()}")
        added = [FleetTarget(t["addr"], t["kind"], t["metrics"]) for t in answer.json()]
        self.targets += added
        return added

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Fleet:
        return self.start() if self._process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


def run_goscraper(
    binaries: Binaries,
    addrs: Sequence[str],
    *,
    seconds: float,
    interval: float = 0.0,
    concurrency: int = 64,
    argv_prefix: Sequence[str] = (),
    gomaxprocs: int = 1,
) -> dict[str, float]:
    """Run the minimal Go scraper against `addrs` and return its JSON report."""
    argv = [
        *argv_prefix,
        str(binaries.goscraper),
        f"-seconds={seconds}",
        f"-interval={interval}",
        f"-concurrency={concurrency}",
    ]
    done = subprocess.run(
        argv,
        input=json.dumps(list(addrs)),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
        env={**os.environ, "GOMAXPROCS": str(gomaxprocs)},
    )
    report: dict[str, float] = json.loads(done.stdout)
    return report
