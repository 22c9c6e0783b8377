"""The built wheel as a user gets it: `pip install` into a fresh virtualenv, then the `memorywatch` command.

We test these aspects: without extras (on Python 3.11, 3.12 and 3.13) `--help` works, `watch` catches a real
leaking Go process and `captures list` shows the capture in its store, and the commands that need an extra
refuse with the install command instead of a traceback (`run` -> `operator`, `s3://` -> `s3`); with the `s3`
extra, `watch --store s3://…` writes into the real S3 server (versitygw) and `captures list s3://…` lists it.
Every install is constrained by constraints.txt, as the docs tell users to do.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from support.gotargets import GoTarget
from support.tools import tool_path

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "store"))

from versitygw import S3Server

REPO = pathlib.Path(__file__).resolve().parents[2]
PIP_TIMEOUT_SECONDS = 900
CLI_TIMEOUT_SECONDS = 200
PYTHONS = ("3.11", "3.12", "3.13")
# One short rule, so a leak of 4 MiB/s is caught within seconds.
# HeapGrowth judges the live heap at GC points, so the window must hold several GCs for the whole watch. A leaking
# heap collects less and less often (the next GC waits for the heap to double): 2 MiB/s of leak beside 64 MiB/s of
# garbage keeps a GC every few seconds for minutes, where 4 MiB/s beside Go's default 16 MiB/s left a 10 s window
# with one GC after a minute (a loaded machine missed the breach).
QUICK_RULES = "- {name: heap-growth, kind: HeapGrowth, window: 20s, minGrowth: 16Mi}\n"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def find_python(version: str) -> str:
    """pyenv's python<version>, else one on PATH (not a pyenv shim, which may point nowhere); fails (never skips)
    when the machine has neither."""
    pyenv = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv")) / "versions"
    candidates = [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)]
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:
        candidates.append(on_path)
    for candidate in candidates:
        probe = run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], timeout=30)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    pytest.fail(f"no working python{version} under {pyenv} or on PATH: install it to test the package on it")


def run(
    argv: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The wheel built from this checkout, as hack/release and the image build it."""
    out = tmp_path_factory.mktemp("wheel")
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
           timeout=PIP_TIMEOUT_SECONDS))  # fmt: skip
    wheels = list(out.glob("memorywatch-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    return wheels[0]


def fresh_venv(where: pathlib.Path, python: str, requirement: str) -> pathlib.Path:
    ok(run([python, "-m", "venv", str(where)], timeout=120))
    pip = [str(where / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    ok(run([*pip, "install", "-c", str(REPO / "constraints.txt"), requirement], timeout=PIP_TIMEOUT_SECONDS))
    return where / "bin" / "memorywatch"


@pytest.fixture(scope="module", params=PYTHONS)
def base_install(
    request: pytest.FixtureRequest, wheel: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> pathlib.Path:
    python = find_python(request.param)
    return fresh_venv(tmp_path_factory.mktemp(f"venv-{request.param}"), python, str(wheel))


@pytest.fixture(scope="module")
def s3_install(wheel: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return fresh_venv(
        tmp_path_factory.mktemp("venv-s3"), find_python("3.11"), f"memorywatch[s3] @ {wheel.as_uri()}"
    )


@pytest.fixture
def leak(gotarget_binary: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[GoTarget]:
    with GoTarget(gotarget_binary, "heap-leak", rate=2 * 2**20, churn=64 * 2**20, log_dir=tmp_path) as target:
        yield target


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def watch_until_capture(exe: pathlib.Path, target: GoTarget, store: str, tmp_path: pathlib.Path,
                        env: dict[str, str] | None = None) -> list[dict[str, object]]:  # fmt: skip
    rules = tmp_path / "rules.yaml"
    rules.write_text(QUICK_RULES)
    proc = run([str(exe), "watch", target.url, "--rules", str(rules), "--interval", "1s", "--duration", "150s",
                "--exit-on-breach", "--output", "json", "--store", store], timeout=CLI_TIMEOUT_SECONDS, env=env)  # fmt: skip
    events = json_lines(proc.stdout)
    assert proc.returncode == 3, (
        f"watch exited {proc.returncode} (3 = breach captured):\n{proc.stderr[-4000:]}"
    )
    return [e for e in events if e["event"] == "capture"]


def test_base_install_help_watch_and_captures_list(
    base_install: pathlib.Path, leak: GoTarget, tmp_path: pathlib.Path
) -> None:
    for args in (["--help"], ["watch", "--help"], ["captures", "list", "--help"], ["--version"]):
        assert "memorywatch" in ok(run([str(base_install), *args], timeout=CLI_TIMEOUT_SECONDS))
    store = tmp_path / "captures"
    captures = watch_until_capture(base_install, leak, str(store), tmp_path)
    assert captures, "the watch exited on a breach but printed no capture event"
    listed = json_lines(ok(run([str(base_install), "captures", "list", str(store), "--output", "json"],
                               timeout=CLI_TIMEOUT_SECONDS)))  # fmt: skip
    assert {row["location"] for row in listed} == {c["location"] for c in captures}, listed
    assert all(row["rule"] == "heap-growth" and row["files"] > 0 for row in listed), listed


def test_base_install_refuses_what_needs_an_extra(base_install: pathlib.Path, tmp_path: pathlib.Path) -> None:
    s3 = run(
        [str(base_install), "watch", "http://127.0.0.1:9", "--store", "s3://bucket/x"],
        timeout=CLI_TIMEOUT_SECONDS,
    )
    assert s3.returncode == 1, s3.stderr
    assert "pip install 'memorywatch[s3]'" in s3.stderr and "Traceback" not in s3.stderr, s3.stderr
    assert not (tmp_path / "s3:").exists()
    listing = run([str(base_install), "captures", "list", "s3://bucket/x"], timeout=CLI_TIMEOUT_SECONDS)
    assert listing.returncode == 1 and "pip install 'memorywatch[s3]'" in listing.stderr, listing.stderr
    # A cluster's captures need the kubernetes client: `kubectl memorywatch` (the same program) says which extra.
    plugin = base_install.parent / "kubectl-memorywatch"
    assert plugin.exists(), "the kubectl plugin script is installed with the base package"
    cluster = run([str(plugin), "captures", "list", "-n", "shop"], timeout=CLI_TIMEOUT_SECONDS)
    assert cluster.returncode == 1 and "pip install 'memorywatch[kube]'" in cluster.stderr, cluster.stderr
    assert "Traceback" not in cluster.stderr
    operator = run([str(base_install), "run", "--namespace", "x"], timeout=CLI_TIMEOUT_SECONDS)
    assert operator.returncode == 2, operator.stderr
    assert "pip install 'memorywatch[operator]'" in operator.stderr and "Traceback" not in operator.stderr


def test_s3_extra_watch_writes_to_s3_and_captures_list_reads_it(
    s3_install: pathlib.Path, leak: GoTarget, tmp_path: pathlib.Path
) -> None:
    import boto3

    server = S3Server(tool_path("VERSITYGW"), tmp_path / "versitygw").start()
    try:
        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                     aws_access_key_id=server.access_key,
                     aws_secret_access_key=server.secret_key).create_bucket(Bucket="evidence")  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
                   AWS_ENDPOINT_URL=server.endpoint)  # fmt: skip
        captures = watch_until_capture(s3_install, leak, "s3://evidence/team-a", tmp_path, env=env)
        assert captures and all(str(c["location"]).startswith("s3://evidence/team-a/") for c in captures), (
            captures
        )
        assert not (tmp_path / "s3:").exists() and not pathlib.Path("s3:").exists()
        listed = json_lines(ok(run([str(s3_install), "captures", "list", "s3://evidence/team-a", "--output", "json"],
                                   timeout=CLI_TIMEOUT_SECONDS, env=env)))  # fmt: skip
        assert {row["location"] for row in listed} == {c["location"] for c in captures}, listed
        objects = list((server.data_dir / "evidence" / "team-a").rglob("manifest.json"))
        assert len(objects) == len(captures), "the manifests are in the S3 server's own data directory"
    finally:
        server.stop()
