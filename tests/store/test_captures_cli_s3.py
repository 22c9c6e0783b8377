"""`memorywatch captures list|show|get s3://…` run as a user would, on a capture the engine took of a real leak.

The capture is made by the engine's own `capture()` from a real leaking Go process into versitygw; the CLI
then runs as a subprocess with the credentials in the standard AWS environment variables. Aspects: list,
show and get find and copy the capture (the copied profile opens in `go tool pprof`), the endpoint can come
from --s3-endpoint or $AWS_ENDPOINT_URL, and wrong credentials, a missing bucket or an unreachable endpoint
end with exit status 1 and one line saying what to check: no traceback, no secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import pathlib
import subprocess
import time
from collections.abc import Iterator, Mapping

import pytest
from versitygw import S3Server

from memorywatch.engine.capture import DEFAULT_PROFILES, CaptureRequest, capture, take_baseline
from memorywatch.rules.model import Breach, RuleKind
from memorywatch.scrape import Scraper, TargetConfig
from memorywatch.store import CaptureStore
from support.gotargets import GoTarget, free_port
from support.watch import go_tool_pprof_top, memorywatch_cmd

CLI_TIMEOUT_SECONDS = 60
pytestmark = pytest.mark.timeout(120)


@dataclasses.dataclass(frozen=True)
class TakenCapture:
    server: S3Server
    bucket: str
    url: str  # s3://bucket/prefix
    path: str
    manifest: Mapping[str, object]


async def _take_capture(target: TargetConfig, store: CaptureStore) -> tuple[str, Mapping[str, object]]:
    async with Scraper() as scraper:
        baseline = await take_baseline(scraper, target, time.time())
        await asyncio.sleep(2.5)  # the target retains 4 MiB/s meanwhile
        breach = Breach(
            rule="heap-growth",
            kind=RuleKind.HEAP_GROWTH,
            target=target.display_name,
            time=time.time(),
            message="live heap kept growing for 2.5s (a breach made up by this test)",
            evidence={"windowSeconds": 2.5},
        )
        request = CaptureRequest(
            namespace="local",
            memorywatch="checkout-watch",
            pod="checkout-0",
            target=target,
            breaches=[breach],
            profiles=DEFAULT_PROFILES,
            recent=[],
            baseline=baseline,
        )
        result = await capture(scraper, store, request, time.time())
    return result.location, result.manifest


@pytest.fixture(scope="module")
def taken(
    s3_server: S3Server, gotarget_binary: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TakenCapture]:
    bucket = s3_server.create_bucket()
    store = s3_server.store(bucket, "team/captures")
    store.check_writable()
    log_dir = tmp_path_factory.mktemp("gotarget")
    with GoTarget(gotarget_binary, "heap-leak", rate=4 * 1024 * 1024, log_dir=log_dir) as target:
        location, manifest = asyncio.run(_take_capture(TargetConfig(url=target.url), store))
    prefix = f"s3://{bucket}/team/captures/"
    assert location.startswith(prefix)
    yield TakenCapture(s3_server, bucket, f"s3://{bucket}/team/captures", location[len(prefix) :], manifest)


def _cli(
    *args: str, server: S3Server, secret: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean.update(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=secret or server.secret_key,
        NO_PROXY="127.0.0.1",
        COLUMNS="200",
        **(env or {}),
    )
    return subprocess.run(
        [*memorywatch_cmd(), "captures", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        env=clean,
        check=False,
    )


def test_list_finds_the_capture(taken: TakenCapture) -> None:
    endpoint = ["--s3-endpoint", taken.server.endpoint]
    proc = _cli("list", taken.url, *endpoint, "--output", "json", server=taken.server)
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert row["path"] == taken.path == "local/checkout-watch/checkout-0/" + taken.path.rsplit("/", 1)[-1]
    assert row["location"] == f"{taken.url}/{taken.path}"
    assert row["rule"] == "heap-growth" and row["pod"] == "checkout-0"
    assert "main.retainRecords" in row["summary"]

    text = _cli("list", taken.url, *endpoint, server=taken.server)
    assert text.returncode == 0, text.stderr
    assert f"1 capture(s) in {taken.url}" in text.stdout and taken.path in text.stdout


def test_show_prints_the_top_growth(taken: TakenCapture) -> None:
    proc = _cli("show", taken.url, "checkout-0", "--s3-endpoint", taken.server.endpoint, server=taken.server)
    assert proc.returncode == 0, proc.stderr
    assert "main.retainRecords" in proc.stdout and "heap.pb.gz" in proc.stdout
    as_json = _cli(
        "show",
        taken.url,
        taken.path,
        "--output",
        "json",
        "--s3-endpoint",
        taken.server.endpoint,
        server=taken.server,
    )
    assert json.loads(as_json.stdout) == json.loads(json.dumps(taken.manifest))


def test_get_copies_files_that_pprof_opens(taken: TakenCapture, tmp_path: pathlib.Path) -> None:
    # The endpoint from the environment this time, as with other AWS tools.
    proc = _cli(
        "get", taken.url, "checkout-0", "--dest", str(tmp_path), server=taken.server,
        env={"AWS_ENDPOINT_URL": taken.server.endpoint},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (folder,) = tmp_path.iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(taken.manifest))
    for f in manifest["files"]:
        assert hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    top = go_tool_pprof_top(folder / "heap.pb.gz", "-diff_base", str(folder / "heap-baseline.pb.gz"))
    assert "main.retainRecords" in top


def test_wrong_credentials_exit_1_naming_the_secret_to_check(taken: TakenCapture) -> None:
    wrong = "not-the-secret-" + taken.server.secret_key[:6]
    proc = _cli("list", taken.url, "--s3-endpoint", taken.server.endpoint, server=taken.server, secret=wrong)
    assert proc.returncode == 1
    assert "check the credentials Secret" in proc.stderr and taken.bucket in proc.stderr
    assert "Traceback" not in proc.stderr
    assert wrong not in proc.stderr + proc.stdout and taken.server.secret_key not in proc.stderr + proc.stdout


def test_a_missing_bucket_exits_1_naming_it(taken: TakenCapture) -> None:
    proc = _cli("list", "s3://mw-not-a-bucket/x", "--s3-endpoint", taken.server.endpoint, server=taken.server)
    assert proc.returncode == 1
    assert "the bucket 'mw-not-a-bucket' does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unreachable_endpoint_exits_1_in_bounded_time(taken: TakenCapture) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = _cli("show", taken.url, "checkout-0", "--s3-endpoint", endpoint, server=taken.server)
    assert time.monotonic() - started < 30  # three attempts with backoff, each refused at once
    assert proc.returncode == 1
    assert f"S3 endpoint unreachable ({endpoint}" in proc.stderr and "Traceback" not in proc.stderr


def test_a_malformed_location_is_refused() -> None:
    proc = subprocess.run(
        [*memorywatch_cmd(), "captures", "list", "s3:///no-bucket"],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    assert proc.returncode == 1 and "not an S3 location" in proc.stderr
