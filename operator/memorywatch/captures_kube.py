"""`memorywatch captures list|show|get|open` against a cluster (also `kubectl memorywatch ...`): MemoryCaptures
read with the user's own kubeconfig, their files downloaded through the operator's aggregated API
(`files.memorywatch.io/v1alpha1`, served through the kube-apiserver) or, for S3 captures, from the presigned URLs
that API hands out. So whoever may `get` a MemoryCapture gets its files; nobody needs the operator's namespace.

Every file is written under a temporary name, its sha256 and size checked against the MemoryCapture's
`spec.files`, and only then renamed to its own name: a mismatch or a broken download never leaves a file that
looks complete."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from memorywatch.api.units import format_bytes

GROUP, VERSION, PLURAL = "memorywatch.io", "v1alpha1", "memorycaptures"
FILES_GROUP = "files.memorywatch.io"
MANIFEST = "manifest.json"
HEAP, HEAP_BASELINE = "heap.pb.gz", "heap-baseline.pb.gz"
#: A file the MemoryCapture gives no size for (manifest.json) is read up to this many bytes.
UNSIZED_MAX_BYTES = 16 << 20
CHUNK_BYTES = 256 * 1024
#: Retries of a download the operator refused for its concurrency bound (429).
BUSY_RETRIES = 5
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")


class CaptureError(Exception):
    """What went wrong, for the user: names the capture, the file and what to do."""


# ------------------------------------------------------------------------------------------------ pure parts


def kube_mode(args: argparse.Namespace) -> bool:
    """The cluster is the source unless a directory or s3:// store is named (`captures list DIR`,
    `captures show DIR CAPTURE`, `captures get DIR CAPTURE`)."""
    if args.captures_command == "open":
        return True
    if args.captures_command == "list":
        return args.store is None
    return len(args.names) == 1


@dataclasses.dataclass(frozen=True)
class Expected:
    name: str
    size: int | None
    sha256: str | None


def expected_files(spec: Mapping[str, Any]) -> list[Expected]:
    """The files to fetch, from the MemoryCapture: plain names only (a hostile name never becomes a path)."""
    out: list[Expected] = []
    for f in spec.get("files") or []:
        name = str((f or {}).get("name", ""))
        if not _FILE.match(name) or name in {e.name for e in out}:
            continue
        size = f.get("size") if isinstance(f.get("size"), int) and f["size"] >= 0 else None
        digest = f.get("sha256") if re.fullmatch(r"[0-9a-f]{64}", str(f.get("sha256", ""))) else None
        if name == MANIFEST and digest is None:
            size = None  # written last: its size is not in the object either
        out.append(Expected(name, size, digest))
    return out


def check_download(want: Expected, size: int, digest: str) -> str | None:
    """None when the bytes are what the MemoryCapture says; else why not."""
    if want.size is not None and size != want.size:
        return f"{want.name}: {size} bytes, but the MemoryCapture says {want.size}"
    if want.sha256 is not None and digest != want.sha256:
        return f"{want.name}: sha256 {digest}, but the MemoryCapture says {want.sha256}"
    return None


def pprof_command(
    names: Sequence[str], folder: pathlib.Path, port: int, *, browser: bool = True
) -> list[str] | None:
    """`go tool pprof -http` on the heap profile, compared with the baseline when the capture has one. The port is
    chosen by the caller: given `:0`, pprof listens on some port but prints `:0` as its address."""
    if HEAP not in names:
        return None
    cmd = ["go", "tool", "pprof", f"-http=127.0.0.1:{port}"]
    if not browser:
        cmd.append("-no_browser")
    if HEAP_BASELINE in names:
        cmd += ["-diff_base", str(folder / HEAP_BASELINE)]
    return [*cmd, str(folder / HEAP)]


def retry_after(headers: Mapping[str, str] | None) -> float:
    """Seconds to wait before retrying a 429: its Retry-After, between 1 and 10 s."""
    try:
        return min(10.0, max(1.0, float((headers or {}).get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def status_message(body: bytes | str | None, fallback: str) -> str:
    """The message of a Kubernetes Status body, else `fallback`."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return fallback
    return str(parsed.get("message") or fallback) if isinstance(parsed, dict) else fallback


def files_api_problem(status: int, body: bytes | str | None, fallback: str) -> str:
    """What a failed call to the capture-files API means. The API server itself answers 404 with a plain page when
    no APIService serves the group (the chart's `fileServer.enabled` is off), and 503 when the operator behind it
    does not answer; the operator's own answers are Status objects with a message."""
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("message"):
        return str(parsed["message"])
    if status == 404:
        return (
            f"this cluster does not serve the capture-files API ({FILES_GROUP}/{VERSION}): the MemoryWatch "
            "chart's fileServer.enabled is off. Ask the platform team to turn it on (docs/review.md); "
            "`captures show NAME` still says where the files are"
        )
    if status == 503:
        return (
            f"the capture-files API ({FILES_GROUP}/{VERSION}) is installed but the operator behind it does not "
            "answer (its APIService is unavailable); try again later or ask the platform team"
        )
    return status_message(body, fallback)


# ------------------------------------------------------------------------------------------------ the cluster


class Cluster:
    """The user's kubeconfig (like kubectl: --kubeconfig, $KUBECONFIG, ~/.kube/config; --context; -n)."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        try:
            from kubernetes import client, config
        except ModuleNotFoundError as e:
            raise CaptureError(
                f"reading captures from a cluster needs the kubernetes client ({e.name}): "
                "pip install 'memorywatch[kube]'"
            ) from None
        try:
            self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c["name"] == context), active)
        except (config.ConfigException, OSError) as e:
            raise CaptureError(f"cannot load the kubeconfig: {e}") from None
        self.namespace = namespace or (active.get("context") or {}).get("namespace") or "default"
        self.custom = client.CustomObjectsApi(self.api)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise CaptureError(f"{what}: {status_message(e.body, f'{e.status} {e.reason}')}") from None
        except HTTPError as e:
            raise CaptureError(f"{what}: the API server did not answer ({e})") from None

    def captures(self, all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            got = self._call(
                "list MemoryCaptures", self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
            )
        else:
            got = self._call(f"list MemoryCaptures in {self.namespace}", self.custom.list_namespaced_custom_object,
                             GROUP, VERSION, self.namespace, PLURAL)  # fmt: skip
        return list(got.get("items") or [])

    def get(self, name: str) -> dict[str, Any]:
        got = self._call(f"get MemoryCapture {self.namespace}/{name}", self.custom.get_namespaced_custom_object,
                         GROUP, VERSION, self.namespace, PLURAL, name)  # fmt: skip
        return dict(got)

    def _files_api(self, name: str, query: list[tuple[str, str]]) -> Any:
        """One call to the capture-files API; a 429 (the operator's download bound) is retried after its
        Retry-After, up to `BUSY_RETRIES` times."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(BUSY_RETRIES + 1):
            try:
                return self._files_api_once(name, query)
            except ApiException as e:
                if e.status != 429 or attempt == BUSY_RETRIES:
                    raise CaptureError(f"get the files of MemoryCapture {self.namespace}/{name}: "
                                       f"{files_api_problem(e.status, e.body, f'{e.status} {e.reason}')}") from None  # fmt: skip
                time.sleep(retry_after(e.headers))
        raise AssertionError("unreachable")

    def _files_api_once(self, name: str, query: list[tuple[str, str]]) -> Any:
        from urllib3.exceptions import HTTPError

        path = f"/apis/{FILES_GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}/{name}"
        try:
            return self.api.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "application/json, application/octet-stream"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=(10, 60),
            )
        except HTTPError as e:
            raise CaptureError(
                f"get the files of {self.namespace}/{name}: the API server did not answer ({e})"
            ) from None

    def file_list(self, name: str) -> dict[str, Any]:
        resp = self._files_api(name, [])
        try:
            return dict(json.loads(resp.data))
        finally:
            resp.release_conn()

    def file_chunks(self, name: str, file: str) -> Iterator[bytes]:
        from urllib3.exceptions import HTTPError

        resp = self._files_api(name, [("file", file)])
        try:
            yield from resp.stream(CHUNK_BYTES, decode_content=False)  # as stored, like _url_chunks
        except HTTPError as e:
            raise CaptureError(f"{file}: the download broke off ({e})") from None
        finally:
            resp.release_conn()


def _url_chunks(url: str) -> Iterator[bytes]:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=httpx.Timeout(60, connect=10), follow_redirects=False) as r:
            if r.status_code != 200:
                raise CaptureError(f"the presigned URL answered HTTP {r.status_code}: {r.read()[:300]!r}")
            # The bytes as stored (what the MemoryCapture's size and sha256 describe): never decoded, so a
            # Content-Encoding on the object cannot grow one chunk beyond CHUNK_BYTES in memory.
            yield from r.iter_raw(CHUNK_BYTES)
    except httpx.HTTPError as e:
        raise CaptureError(f"download from the presigned URL failed: {e}") from None


def download(
    cluster: Cluster, name: str, dest: pathlib.Path, err: Any = sys.stderr
) -> tuple[pathlib.Path, list[str]]:
    """Fetch every file of MemoryCapture `name` into `dest/NAME/`, each checked; (folder, file names)."""
    obj = cluster.get(name)
    wanted = expected_files(obj.get("spec") or {})
    if not wanted:
        raise CaptureError(f"MemoryCapture {cluster.namespace}/{name} lists no files")
    listing = cluster.file_list(name)
    urls = {str(f.get("name")): str(f["url"]) for f in listing.get("files") or [] if f.get("url")}
    folder = dest / name
    folder.mkdir(parents=True, exist_ok=True)
    for want in wanted:
        final = folder / want.name
        partial = folder / f".{want.name}.partial"
        chunks = _url_chunks(urls[want.name]) if want.name in urls else cluster.file_chunks(name, want.name)
        limit = want.size if want.size is not None else UNSIZED_MAX_BYTES
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise CaptureError(f"{want.name}: more than the {limit} bytes the MemoryCapture says")
                    digest.update(chunk)
                    out.write(chunk)
            if (problem := check_download(want, size, digest.hexdigest())) is not None:
                raise CaptureError(f"{problem}; the file was not kept (download it again, or report it)")
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        note = "sha256 ok" if want.sha256 else "no digest in the MemoryCapture"
        print(f"  {want.name:<24} {format_bytes(size):>10}  {note}", file=err)
    return folder, [w.name for w in wanted]


# ------------------------------------------------------------------------------------------------ commands


def run(args: argparse.Namespace) -> int:
    try:
        cluster = Cluster(args.kubeconfig, args.context, args.namespace)
        cmd = args.captures_command
        if cmd == "list":
            return _list(cluster, args.all_namespaces, args.output)
        name = args.names[0]
        if cmd == "show":
            return _show(cluster.get(name), args.output)
        if cmd == "get":
            dest = pathlib.Path(args.output_dir or args.dest)
            print(f"downloading MemoryCapture {cluster.namespace}/{name}", file=sys.stderr)
            folder, names = download(cluster, name, dest)
            print(f"{len(names)} files in {folder}")
            return 0
        cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
        folder, names = download(cluster, name, cache / "memorywatch" / "captures" / cluster.namespace)
        command = pprof_command(names, folder, _free_port(), browser=not args.no_browser)
        if command is None:
            raise CaptureError(f"MemoryCapture {cluster.namespace}/{name} has no {HEAP}; see {folder}")
        if shutil.which("go") is None:
            print(f"Go is not installed (no `go` on PATH); with Go, run:\n  {' '.join(command)}")
            return 1
        print(f"running: {' '.join(command)}", flush=True)
        return run_until_stopped(command)
    except CaptureError as e:
        print(f"memorywatch: {e}", file=sys.stderr)
        return 1


def run_until_stopped(command: list[str]) -> int:
    """Run `command` in a process group of its own until it exits; Ctrl-C, SIGTERM or SIGHUP to us stop the whole
    group (`go tool pprof` runs pprof as a child of its own, which a signal to `go` alone would leave running)."""
    proc = subprocess.Popen(command, process_group=0)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _list(cluster: Cluster, all_namespaces: bool, output: str) -> int:
    items = sorted(cluster.captures(all_namespaces), key=lambda c: str((c.get("spec") or {}).get("time", "")))
    if output == "json":
        for c in items:
            print(json.dumps({"namespace": c["metadata"].get("namespace"), "name": c["metadata"]["name"],
                              **{k: (c.get("spec") or {}).get(k) for k in ("pod", "rule", "time", "size", "summary")}}))  # fmt: skip
        return 0
    if not items:
        print(
            f"no MemoryCaptures in {'any namespace' if all_namespaces else 'namespace ' + cluster.namespace}"
        )
        return 0
    for c in items:
        spec, meta = c.get("spec") or {}, c["metadata"]
        ns = f"{meta.get('namespace')}/" if all_namespaces else ""
        print(f"{ns}{meta['name']}\n    {spec.get('time')}  pod {spec.get('pod')}  rule {spec.get('rule')}  "
              f"{spec.get('size')}\n    {spec.get('summary', '')}")  # fmt: skip
    return 0


def _show(obj: Mapping[str, Any], output: str) -> int:
    if output == "json":
        print(json.dumps(obj, indent=2))
        return 0
    spec, meta = obj.get("spec") or {}, obj.get("metadata") or {}
    action = (obj.get("status") or {}).get("action") or {}
    print(f"{meta.get('namespace')}/{meta.get('name')}  ({(spec.get('storage') or {}).get('location')})")
    print(f"pod {spec.get('pod')}  rule {spec.get('rule')} ({spec.get('kind')})  at {spec.get('time')}")
    print(f"summary: {spec.get('summary')}")
    for g in spec.get("heapGrowth") or []:
        print(f"  heap +{format_bytes(int(g.get('inuseBytesDelta') or 0)):>10}  {g.get('function')}  "
              f"{g.get('file')}:{g.get('line')}")  # fmt: skip
    for g in spec.get("goroutineGrowth") or []:
        print(f"  goroutines {g.get('before')} -> {g.get('after')} (+{g.get('delta')})  {g.get('function')}")
    for f in spec.get("files") or []:
        size = format_bytes(f["size"]) if isinstance(f.get("size"), int) else "-"
        print(f"  file {f.get('name'):<24} {size:>10}  {str(f.get('sha256') or '')[:16]}")
    for e in spec.get("errors") or []:
        print(f"  not captured: {e}")
    print(f"action: {action.get('type')} {action.get('result')} {action.get('message', '')}".rstrip())
    print(f"get the files: kubectl memorywatch captures get {meta.get('name')} -n {meta.get('namespace')}")
    return 0
