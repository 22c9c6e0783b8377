"""`memorywatch captures` / `kubectl memorywatch captures` against a cluster, pure parts: which source the
arguments name (a cluster's MemoryCaptures, or a directory / s3:// store as before), which files to fetch and how a
download is checked, the pprof command line `open` runs, and the error a Status body gives."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import pytest

from memorywatch import captures_kube as ck
from memorywatch.cli import _build_parser, main

SHA = "b" * 64


def parse(*argv: str) -> argparse.Namespace:
    return _build_parser().parse_args(["captures", *argv])


def test_without_a_store_the_cluster_is_the_source() -> None:
    assert ck.kube_mode(parse("list"))
    assert ck.kube_mode(parse("list", "-n", "shop", "--context", "prod", "--kubeconfig", "/k"))
    assert ck.kube_mode(parse("list", "-A"))
    assert ck.kube_mode(parse("show", "cap-1"))
    assert ck.kube_mode(parse("get", "cap-1", "-o", "out"))
    assert ck.kube_mode(parse("open", "cap-1"))
    args = parse("get", "cap-1", "-n", "shop", "-o", "out")
    assert (args.namespace, args.output_dir, args.names) == ("shop", "out", ["cap-1"])
    # With a store the old commands keep working.
    assert not ck.kube_mode(parse("list", "./captures"))
    assert not ck.kube_mode(parse("show", "./captures", "checkout"))
    assert not ck.kube_mode(parse("get", "s3://b/p", "checkout", "--dest", "x"))


def test_old_store_commands_still_read_a_directory(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "store" / "ns" / "w" / "pod" / "20261201T100000Z-heap"
    folder.mkdir(parents=True)
    (folder / "heap.pb.gz").write_bytes(b"x")
    manifest = {"time": "t", "pod": "pod", "rule": "heap", "summary": "s", "files": [
        {"name": "heap.pb.gz", "size": 1, "sha256": SHA}], "errors": [], "breaches": []}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["captures", "list", str(tmp_path / "store")]) == 0
    assert "ns/w/pod/20261201T100000Z-heap" in capsys.readouterr().out
    assert main(["captures", "show", str(tmp_path / "store"), "pod"]) == 0
    assert "summary: s" in capsys.readouterr().out
    assert main(["captures", "show", str(tmp_path / "store"), "pod", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["pod"] == "pod"
    assert main(["captures", "get", str(tmp_path / "store"), "pod", "--dest", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "ns_w_pod_20261201T100000Z-heap" / "heap.pb.gz").read_bytes() == b"x"


def test_three_names_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["captures", "show", "a", "b", "c"]) == 2
    assert "give CAPTURE (a MemoryCapture) or STORE CAPTURE" in capsys.readouterr().err


def test_a_missing_kubeconfig_is_a_clear_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["captures", "list", "--kubeconfig", str(tmp_path / "nope")]) == 1
    assert "cannot load the kubeconfig" in capsys.readouterr().err


def test_expected_files_keep_only_plain_names() -> None:
    spec = {"files": [
        {"name": "heap.pb.gz", "size": 10, "sha256": SHA},
        {"name": "heap.pb.gz", "size": 99},            # a duplicate: the first wins
        {"name": "../../.bashrc", "size": 1},          # never a path
        {"name": ".hidden", "size": 1},
        {"name": "goroutine.txt", "size": -1, "sha256": "zz"},
        {"name": "manifest.json"},
    ]}  # fmt: skip
    assert ck.expected_files(spec) == [
        ck.Expected("heap.pb.gz", 10, SHA),
        ck.Expected("goroutine.txt", None, None),
        ck.Expected("manifest.json", None, None),
    ]
    assert ck.expected_files({}) == []


def test_a_download_must_match_size_and_digest() -> None:
    want = ck.Expected("heap.pb.gz", 10, SHA)
    assert ck.check_download(want, 10, SHA) is None
    assert ck.check_download(want, 9, SHA) == "heap.pb.gz: 9 bytes, but the MemoryCapture says 10"
    assert "sha256 " + "c" * 64 + ", but the MemoryCapture says " + SHA in str(
        ck.check_download(want, 10, "c" * 64)
    )
    assert ck.check_download(ck.Expected("manifest.json", None, None), 123, "d" * 64) is None


def test_pprof_command() -> None:
    folder = pathlib.Path("/c")
    assert ck.pprof_command(["heap.pb.gz", "heap-baseline.pb.gz"], folder, 8181) == [
        "go", "tool", "pprof", "-http=127.0.0.1:8181", "-diff_base", "/c/heap-baseline.pb.gz", "/c/heap.pb.gz"]  # fmt: skip
    assert ck.pprof_command(["heap.pb.gz"], folder, 8181, browser=False) == [
        "go", "tool", "pprof", "-http=127.0.0.1:8181", "-no_browser", "/c/heap.pb.gz"]  # fmt: skip
    assert ck.pprof_command(["goroutine.txt"], folder, 8181) is None


def test_status_message() -> None:
    body = json.dumps({"kind": "Status", "message": 'memorycaptures "x" is forbidden: ...'})
    assert ck.status_message(body, "403") == 'memorycaptures "x" is forbidden: ...'
    assert ck.status_message(b"<html>", "502 Bad Gateway") == "502 Bad Gateway"
    assert ck.status_message(None, "x") == "x"
    assert ck.status_message("[1]", "x") == "x"


def test_files_api_problems_say_what_to_do() -> None:
    # the operator's own answers are Status objects: their message is the explanation
    status = b'{"kind":"Status","message":"MemoryCapture shop/x lists no file named y"}'
    assert ck.files_api_problem(404, status, "404 Not Found") == "MemoryCapture shop/x lists no file named y"
    # the API server's plain 404: no APIService serves the group
    off = ck.files_api_problem(404, b"404 page not found", "404 Not Found")
    assert "fileServer.enabled is off" in off and "files.memorywatch.io/v1alpha1" in off
    # an APIService whose operator does not answer
    assert "does not answer" in ck.files_api_problem(503, b"service unavailable", "503")
    assert ck.files_api_problem(502, None, "502 Bad Gateway") == "502 Bad Gateway"


def test_the_kubectl_plugin_script_is_declared() -> None:
    import tomllib

    root = pathlib.Path(__file__).resolve().parents[3]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-memorywatch"] == scripts["memorywatch"] == "memorywatch.cli:main"
    assert (pathlib.Path(sys.executable).parent / "kubectl-memorywatch").exists()


def test_a_busy_operator_is_retried_after_its_retry_after() -> None:
    assert ck.retry_after({"Retry-After": "1"}) == 1.0
    assert ck.retry_after({"Retry-After": "3"}) == 3.0
    assert ck.retry_after({"Retry-After": "3600"}) == 10.0
    assert ck.retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 1.0
    assert ck.retry_after(None) == 1.0


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_stopping_open_stops_pprof_and_its_children(tmp_path: pathlib.Path, sig: str) -> None:
    """`go tool pprof` runs pprof as its own child: stopping `open` must stop both (a real process tree here)."""
    import os
    import signal
    import subprocess
    import time

    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import sys; from memorywatch.captures_kube import run_until_stopped; "
        f"sys.exit(run_until_stopped(['sh', '-c', 'sleep 300 & echo $! > {pidfile}; wait']))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(30) == 130
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{grandchild}/stat") as f:  # a zombie until init reaps it counts as gone
                if f.read().split(") ", 1)[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(grandchild, signal.SIGKILL)
        raise AssertionError("the grandchild outlived `open`")


def test_a_presigned_download_keeps_the_stored_bytes_and_never_inflates_them() -> None:
    """A real HTTP server on 127.0.0.1 answers with a gzip bomb marked `Content-Encoding: gzip`: the download
    yields the stored (compressed) bytes in chunks of at most CHUNK_BYTES, never the 256 MiB they inflate to."""
    import gzip
    import http.server
    import threading

    bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        chunks = list(
            ck._url_chunks(f"http://127.0.0.1:{server.server_address[1]}/heap.pb.gz?X-Amz-Signature=x")
        )
    finally:
        server.shutdown()
        server.server_close()
    assert b"".join(chunks) == bomb
    assert max(len(c) for c in chunks) <= ck.CHUNK_BYTES
