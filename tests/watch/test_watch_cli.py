"""`memorywatch watch` as a command: bad input is refused with the field and the fix; exit codes; the
forecast (MemoryLimit) and CEL (Threshold) rules against real Go processes; a target that goes away."""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from support.gotargets import GoTarget
from support.watch import memorywatch_cmd, run_watch


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*memorywatch_cmd(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_a_bad_rules_file_names_the_field_and_exits_2(tmp_path: pathlib.Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- {name: heap, kind: HeapGrowth, window: 15x}\n- {name: t, kind: Threshold}\n- {name: g, kind: GoroutineGrowth, minGrowht: 5}\n"
    )
    proc = _run("watch", "http://127.0.0.1:1", "--rules", str(rules), "--store", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert "rules[0].window" in proc.stderr and "30s" in proc.stderr
    assert "rules[1].expression" in proc.stderr
    assert "minGrowht" in proc.stderr and "minGrowth" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["watch", "ftp://x"], "TARGET 'ftp://x'"),
        (["watch", "http://127.0.0.1:1/?debug=1"], "without query or fragment"),
        (["watch", "http://me:s3cret@127.0.0.1:1", "--bearer-token-file", "/dev/null"], "the file is empty"),
        (["watch", "http://me:s3cret@127.0.0.1:1"], "give only one of them"),
        (["watch", "http://127.0.0.1:1", "--interval", "soon"], "--interval"),
        (["watch", "http://127.0.0.1:1", "--interval", "500ms"], "at least 1s"),
        (["watch", "http://127.0.0.1:1", "--profiles", "heap,memstats"], "unknown profile(s) memstats"),
        (["watch", "http://127.0.0.1:1", "--memory-limit", "lots"], "--memory-limit"),
    ],
)
def test_bad_flags_are_refused_clearly(
    tmp_path: pathlib.Path, args: list[str], needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORYWATCH_BEARER_TOKEN", "t0ken")  # only read when no --bearer-token-file
    proc = _run(*args, "--store", str(tmp_path / "s"))
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr and "t0ken" not in proc.stderr, "no credential in the message"


def test_an_unreachable_target_is_reported_not_fatal(tmp_path: pathlib.Path) -> None:
    run = run_watch(
        ["http://127.0.0.1:9", "--interval", "1s", "--duration", "4s"], tmp_path / "s", timeout_seconds=60
    )
    assert run.returncode == 0, run.explain()
    failures = run.of("scrape-failed")
    assert failures and failures[0]["reason"] == "TargetUnreachable"
    assert len(failures) < 4, "failures are aggregated, not one line per scrape"


@pytest.mark.slow
def test_exit_on_breach_exits_3_after_the_capture_lands(
    tmp_path: pathlib.Path, gotarget_binary: pathlib.Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text('- {name: many-goroutines, kind: Threshold, expression: "goroutines > 150", for: 4s}\n')
    with GoTarget(gotarget_binary, "goroutine-leak", rate=50, log_dir=tmp_path) as target:
        run = run_watch(
            [target.url, "--interval", "1s", "--rules", str(rules), "--exit-on-breach", "--duration", "60s"],
            tmp_path / "store",
            timeout_seconds=120,
        )
    assert run.returncode == 3, run.explain()
    (breach,) = run.of("breach")
    assert breach["rule"] == "many-goroutines" and breach["kind"] == "Threshold"
    (capture,) = run.of("capture")
    assert run.events[-1]["event"] == "capture", "the process exits right after the capture"
    folder = pathlib.Path(capture["location"].removeprefix("file://"))
    assert json.loads((folder / "manifest.json").read_text())["rule"] == "many-goroutines"


@pytest.mark.slow
def test_memory_limit_forecast_fires_before_the_limit(
    tmp_path: pathlib.Path, gotarget_binary: pathlib.Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {name: near-limit, kind: MemoryLimit, window: 30s, horizon: 5m}\n")
    with GoTarget(
        gotarget_binary, "heap-leak", rate=2 * 1024 * 1024, log_dir=tmp_path, metrics=True
    ) as target:
        run = run_watch(
            [
                target.url,
                "--interval",
                "2s",
                "--rules",
                str(rules),
                "--memory-limit",
                "600Mi",
                "--exit-on-breach",
                "--duration",
                "100s",
            ],
            tmp_path / "store",
            timeout_seconds=160,
        )
    assert run.returncode == 3, run.explain()
    (breach,) = run.of("breach")
    assert breach["kind"] == "MemoryLimit"
    last = [e for e in run.of("sample") if e["rssBytes"]][-1]
    assert last["rssBytes"] < 600 * 2**20, "the forecast fired before the limit was reached"
    assert "limit" in breach["message"].lower()
