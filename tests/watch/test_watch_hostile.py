"""The budgets protect `memorywatch watch` too: one process watching hostile endpoints and a leaking real Go
target stays bounded in memory and still names the leak within two windows, as it does alone
(test_watch_leaks.py asserts the same bound with no hostile neighbour).

The hostile endpoints are real HTTP servers in this test process (a thread with its own event loop):
- `bomb`: a normal heap?debug=1, but 30 MiB of /metrics on every sample, a profile bomb (2,000,000
  samples, ~60 KiB gzipped) as its heap profile, and 50,000 distinct goroutine stacks; a Threshold rule
  fires on it, so a capture goes through the bomb;
- `arrays`: a MemStats PauseNs array of 200,000 entries in heap?debug=1;
- `hang`: heap?debug=1 that stops mid-body and never finishes.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from scrape.hostile_servers import RawServer, hostile_go_handler
from support.gotargets import GoTarget
from support.watch import WatchRun, memorywatch_cmd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WINDOW_SECONDS = 40
DURATION_SECONDS = 110
RULES = f"""
- {{name: goroutine-leak, kind: GoroutineGrowth, window: {WINDOW_SECONDS}s, minGrowth: "300"}}
- {{name: heap-growth, kind: HeapGrowth, window: {WINDOW_SECONDS}s, minGrowth: 16Mi}}
- {{name: hostile-count, kind: Threshold, expression: "goroutines > 900000"}}
"""


class HostileServers:
    """RawServers on their own event loop in a thread, so the watch subprocess talks to a live peer."""

    def __init__(self, fixtures: pathlib.Path) -> None:
        self.fixtures = fixtures
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers: dict[str, RawServer] = {}

    def __enter__(self) -> dict[str, str]:
        self.thread.start()
        for kind in ("bomb", "arrays", "hang"):
            server = RawServer(hostile_go_handler(kind, self.fixtures))
            asyncio.run_coroutine_threadsafe(server.__aenter__(), self.loop).result(30)
            self.servers[kind] = server
        return {kind: server.url for kind, server in self.servers.items()}

    def __exit__(self, *exc: object) -> None:
        for server in self.servers.values():
            asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (the parse workers), from /proc."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = pathlib.Path(f"/proc/{current}/status").read_text()
            children = pathlib.Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        pids.extend(int(c) for c in children)
    return total


@pytest.fixture(scope="module")
def hostile_run(
    tmp_path_factory: pytest.TempPathFactory, gotarget_binary: pathlib.Path, go_fixtures_dir: pathlib.Path
) -> Iterator[tuple[WatchRun, str, float, int, dict[str, str]]]:
    work = tmp_path_factory.mktemp("watch-hostile")
    (work / "rules.yaml").write_text(RULES)
    with (
        HostileServers(go_fixtures_dir) as urls,
        GoTarget(gotarget_binary, "goroutine-leak", rate=20, log_dir=work) as victim,
    ):
        cmd = [
            *memorywatch_cmd(),
            "watch",
            "--output",
            "json",
            "--store",
            str(work / "store"),
            victim.url,
            *urls.values(),
            "--interval",
            "2s",
            "--rules",
            str(work / "rules.yaml"),
            "--duration",
            f"{DURATION_SECONDS}s",
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        started = time.time()
        out, err = work / "stdout", work / "stderr"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
            peak = 0
            while proc.poll() is None and time.time() - started < DURATION_SECONDS + 120:
                peak = max(peak, tree_rss_bytes(proc.pid))
                time.sleep(0.5)
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        events = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        run = WatchRun(proc.returncode, events, err.read_text(), work / "store")
        print(f"\npeak RSS of memorywatch watch and its parse workers: {peak / 2**20:.0f} MiB")
        yield run, victim.url.split("://", 1)[1], started, peak, urls


def _target(run: WatchRun, hostport: str) -> str:
    labels = {e["target"] for e in run.events if hostport in e["target"]}
    assert len(labels) == 1, labels
    return labels.pop()


def test_the_leak_next_to_hostile_endpoints_is_named_within_two_windows(
    hostile_run: tuple[WatchRun, str, float, int, dict[str, str]],
) -> None:
    run, victim, started, _, _ = hostile_run
    assert run.returncode == 0, run.explain()
    target = _target(run, victim)
    breaches = [b for b in run.of("breach", target) if b["rule"] == "goroutine-leak"]
    assert breaches, run.explain()
    first = min(_ts(b["time"]) for b in breaches)
    assert first - started <= 2 * WINDOW_SECONDS + 10, f"named after {first - started:.0f}s"
    assert run.of("capture", target), run.explain()
    samples = run.of("sample", target)
    assert len(samples) >= DURATION_SECONDS / 2 * 0.7, "the victim was sampled about every 2 s throughout"


def test_the_watch_stays_under_the_charts_memory_limit(
    hostile_run: tuple[WatchRun, str, float, int, dict[str, str]],
) -> None:
    _, _, _, peak, _ = hostile_run
    assert 0 < peak < 1 << 30, f"peak {peak / 2**20:.0f} MiB"


def test_every_hostile_input_is_reported_naming_its_limit(
    hostile_run: tuple[WatchRun, str, float, int, dict[str, str]],
) -> None:
    run, _, _, _, urls = hostile_run
    arrays = _target(run, urls["arrays"].split("://", 1)[1])
    failed = run.of("scrape-failed", arrays)
    assert failed and failed[0]["reason"] == "OverBudget" and "max_line_bytes" in failed[0]["error"]
    hang = _target(run, urls["hang"].split("://", 1)[1])
    assert run.of("scrape-failed", hang)[0]["reason"] == "ScrapeTimeout"
    bomb = _target(run, urls["bomb"].split("://", 1)[1])
    assert run.of("sample", bomb), "30 MiB of /metrics is parsed (in a worker), not refused"
    captures = run.of("capture", bomb)
    assert captures, run.explain()
    errors = " ".join(captures[0]["errors"])
    assert "max_profile_samples" in errors and "max_goroutine_groups" in errors, errors


def _ts(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
