"""`memorywatch captures list|show|get`: read a capture store and say what each capture found."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import urllib.parse
from typing import Any

from rich.console import Console
from rich.table import Table

from memorywatch.api.units import format_bytes
from memorywatch.report import REPORT_FILE
from memorywatch.store import CaptureNotFound, CaptureRef, CaptureStore, FilesystemStore, StoreError
from memorywatch.store.base import MANIFEST_NAME, safe_segment


def open_store(
    location: str, *, s3_endpoint: str | None = None, s3_region: str | None = None
) -> CaptureStore:
    """A store from what the user typed: a directory, a file:// URL, or s3://bucket/prefix.

    For S3, the endpoint is `--s3-endpoint`, else $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL, else AWS; the
    credentials come from boto3's usual chain ($AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY, a profile, a role).
    """
    if location.startswith("s3://"):
        try:
            from memorywatch.store.s3 import S3Store
        except ModuleNotFoundError as e:  # boto3 comes with the `s3` (and `operator`) extra
            raise StoreError(
                f"{location}: S3 stores need boto3, which is not installed ({e.name}): "
                "pip install 'memorywatch[s3]'"
            ) from None

        parts = urllib.parse.urlsplit(location)
        if not parts.netloc or parts.query or parts.fragment:
            raise StoreError(f"not an S3 location: {location!r} (expected s3://bucket or s3://bucket/prefix)")
        endpoint = s3_endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return S3Store(parts.netloc, parts.path.strip("/"), endpoint_url=endpoint, region=s3_region)
    if location.startswith("file://"):
        location = location[len("file://") :]
    return FilesystemStore(location)


def _manifest(store: CaptureStore, ref: CaptureRef) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(store.read(ref, MANIFEST_NAME))
    return data


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False, soft_wrap=True)
    try:
        store = open_store(
            args.store,
            s3_endpoint=getattr(args, "s3_endpoint", None),
            s3_region=getattr(args, "s3_region", None),
        )
        if args.captures_command == "list":
            return _list(console, store, args.output)
        ref = store.resolve(args.capture)
        if args.captures_command == "show":
            return _show(console, store, ref, args.output)
        return _get(console, store, ref, pathlib.Path(args.dest))
    except (CaptureNotFound, StoreError) as e:
        print(f"memorywatch: {e}", file=sys.stderr)
        return 1


def _list(console: Console, store: CaptureStore, output: str) -> int:
    rows: list[dict[str, Any]] = []
    for ref in store.list():
        try:
            m = _manifest(store, ref)
        except (StoreError, ValueError) as e:
            rows.append({"path": ref.path, "location": ref.location, "error": f"unreadable manifest: {e}"})
            continue
        rows.append(
            {
                "path": ref.path,
                "location": ref.location,
                "time": m.get("time"),
                "pod": m.get("pod"),
                "rule": m.get("rule"),
                "summary": m.get("summary"),
                "files": len(m.get("files", [])),
                "errors": len(m.get("errors", [])),
            }
        )
    if output == "json":
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        console.print(f"no captures in {store.location}")
        return 0
    console.print(f"{len(rows)} capture(s) in {store.location}, oldest first:\n")
    for row in rows:
        console.print(f"[bold]{row['path']}[/bold]")
        if "error" in row:
            console.print(f"    [yellow]{row['error']}[/yellow]")
            continue
        console.print(
            f"    {row['time']}  pod {row['pod']}  rule [red]{row['rule']}[/red]  files {row['files']}"
        )
        console.print(f"    {row['summary']}")
        if row["errors"]:
            console.print(
                f"    [yellow]{row['errors']} profile(s) could not be captured: see `captures show`[/yellow]"
            )
    return 0


def _show(console: Console, store: CaptureStore, ref: CaptureRef, output: str) -> int:
    m = _manifest(store, ref)
    if output == "json":
        print(json.dumps(m, indent=2))
        return 0
    console.print(f"[bold]{ref.path}[/bold]  ({ref.location})")
    console.print(f"target {m.get('target')}  pod {m.get('pod')}  at {m.get('time')}")
    console.print(f"[bold]summary:[/bold] {m.get('summary')}")
    for b in m.get("breaches", []):
        console.print(f"[red]{b['rule']}[/red] ({b['kind']}): {b['message']}")
    heap = m.get("heap", {}).get("topGrowth", [])
    if heap:
        t = Table(title=f"heap: in-use growth by function (compared to {m['heap'].get('comparedTo')})")
        for col in ("function", "growth", "in use now", "where"):
            t.add_column(col, overflow="fold")
        for g in heap:
            t.add_row(
                g["function"],
                "+" + format_bytes(g["inuseBytesDelta"]),
                format_bytes(g["inuseBytes"]),
                f"{g['file']}:{g['line']}",
            )
        console.print(t)
    gor = m.get("goroutines", {}).get("topGrowth", [])
    if gor:
        t = Table(title=f"goroutines: stack groups that grew (total now {m['goroutines'].get('total')})")
        for col in ("function", "before", "now", "growth", "stack"):
            t.add_column(col, overflow="fold")
        for g in gor:
            t.add_row(
                g["function"], str(g["before"]), str(g["after"]), f"+{g['delta']}", "\n".join(g["stack"][:4])
            )
        console.print(t)
    files = Table(title="files")
    for col in ("file", "size", "sha256"):
        files.add_column(col)
    for f in m.get("files", []):
        files.add_row(f["name"], format_bytes(f["size"]), f["sha256"][:16] + "…")
    console.print(files)
    for err in m.get("errors", []):
        console.print(f"[yellow]not captured:[/yellow] {err}")
    names = {f["name"] for f in m.get("files", [])}
    if REPORT_FILE in names:
        if ref.location.startswith("file://"):
            console.print(
                f"report: {ref.location.removeprefix('file://')}/{REPORT_FILE}  (open it in a browser)"
            )
        else:
            console.print(
                f"report: {REPORT_FILE} in {ref.location}; `captures get` copies it with the profiles"
            )
    if "heap.pb.gz" in names:
        base = "-diff_base heap-baseline.pb.gz " if "heap-baseline.pb.gz" in names else ""
        if ref.location.startswith("file://"):
            console.print(
                f"open it: cd {ref.location.removeprefix('file://')} && go tool pprof -top {base}heap.pb.gz"
            )
        else:
            console.print(
                f"open it: memorywatch captures get {ref.location.split('/', 3)[2]}… {ref.path} --dest DIR, then go tool pprof -top {base}heap.pb.gz there"
            )
    return 0


def _get(console: Console, store: CaptureStore, ref: CaptureRef, dest: pathlib.Path) -> int:
    m = _manifest(store, ref)
    target = dest / safe_segment(ref.path.replace("/", "_"))
    target.mkdir(parents=True, exist_ok=True)
    for f in m.get("files", []):
        (target / safe_segment(f["name"])).write_bytes(store.read(ref, f["name"]))
    (target / MANIFEST_NAME).write_bytes(store.read(ref, MANIFEST_NAME))
    console.print(f"copied {len(m.get('files', [])) + 1} files to {target}")
    return 0
