"""The `memorywatch` command line: `watch` (local mode) and `captures list|show|get`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from memorywatch import __version__
from memorywatch.api.rules_config import ConfigError, default_rules, load_rules_yaml
from memorywatch.api.units import parse_duration, parse_quantity
from memorywatch.engine.capture import DEFAULT_PROFILES, PROFILE_SOURCES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BREACH = 3


class UsageError(Exception):
    """Bad input on the command line or in a file it names; the message names the flag and the fix."""


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def _target_url(text: str) -> str:
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"TARGET {text!r}: expected the base URL of a Go process serving net/http/pprof, e.g. http://127.0.0.1:6060"
        )
    return parts.geturl()


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="memorywatch", description="Catch memory leaks in Go services and keep the evidence."
    )
    p.add_argument("--version", action="version", version=f"memorywatch {__version__}")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser(
        "watch", help="watch Go processes' pprof endpoints, judge their memory, capture on a leak"
    )
    w.add_argument(
        "targets", nargs="+", metavar="TARGET", help="base URL of a Go process serving net/http/pprof"
    )
    w.add_argument("--interval", default="15s", help="time between scrapes of each target (default 15s)")
    w.add_argument("--duration", default=None, help="stop after this long (default: until interrupted)")
    w.add_argument(
        "--rules", default=None, metavar="FILE", help="YAML list of rules in the schema of spec.rules"
    )
    w.add_argument(
        "--store",
        default="./memorywatch-captures",
        metavar="STORE",
        help="where captures go: a directory (default ./memorywatch-captures) or s3://bucket/prefix "
        "(needs the s3 extra: pip install 'memorywatch[s3]')",
    )
    w.add_argument(
        "--output",
        default="text",
        choices=["text", "json"],
        help="text: a live table; json: one object per line",
    )
    w.add_argument(
        "--exit-on-breach", action="store_true", help="exit with status 3 once the first breach is captured"
    )
    w.add_argument(
        "--profiles",
        default=",".join(DEFAULT_PROFILES),
        help=f"profiles to capture, of: {', '.join(PROFILE_SOURCES)}",
    )
    w.add_argument(
        "--pprof-path", default="/debug/pprof", help="where net/http/pprof is mounted (default /debug/pprof)"
    )
    w.add_argument(
        "--metrics-path", default="/metrics", help="Prometheus metrics path to try for RSS ('' to never ask)"
    )
    w.add_argument("--memory-limit", default=None, help="memory limit for the MemoryLimit rule, e.g. 512Mi")
    w.add_argument(
        "--cooldown", default="30m", help="per-target, per-rule quiet time after a breach (default 30m)"
    )
    w.add_argument(
        "--bearer-token-file",
        default=None,
        metavar="FILE",
        help="file holding a bearer token (or env MEMORYWATCH_BEARER_TOKEN)",
    )
    w.add_argument("--ca-file", default=None, help="CA bundle to verify https targets")
    w.add_argument("--cert-file", default=None, help="client certificate for https targets")
    w.add_argument("--key-file", default=None, help="client key for https targets")
    w.add_argument(
        "--insecure-skip-verify", action="store_true", help="do not verify https targets' certificates"
    )
    w.add_argument(
        "--name", default="watch", help="name used in capture paths: local/<name>/<target>/… (default watch)"
    )

    r = sub.add_parser("run", help="run the Kubernetes operator (kopf): serve MemoryWatch objects")
    from memorywatch.operator_main import add_run_arguments

    add_run_arguments(r)
    for sp in (w, r):  # also accepted after the subcommand, where the chart and most people put it
        sp.add_argument(
            "--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"]
        )

    c = sub.add_parser(
        "captures",
        help="browse captures: a cluster's MemoryCaptures (default), or a capture directory / s3:// store",
    )
    csub = c.add_subparsers(dest="captures_command", required=True)
    lst = csub.add_parser("list", help="list MemoryCaptures (or the captures in STORE)")
    lst.add_argument("store", metavar="STORE", nargs="?", help="a capture directory, or s3://bucket/prefix")
    lst.add_argument("--output", default="text", choices=["text", "json"])
    lst.add_argument("-A", "--all-namespaces", action="store_true", help="MemoryCaptures of every namespace")
    show = csub.add_parser("show", help="print a capture's summary and top growth")
    show.add_argument("names", nargs="+", metavar="[STORE] CAPTURE",
                      help="a MemoryCapture's name, or STORE and the capture's path (or a unique part of it)")  # fmt: skip
    show.add_argument("--output", default="text", choices=["text", "json"])
    get = csub.add_parser("get", help="download a capture's files, each checked against its sha256")
    get.add_argument("names", nargs="+", metavar="[STORE] CAPTURE")
    get.add_argument("--dest", default=".", help="directory to copy into (default: current)")
    get.add_argument("-o", "--output-dir", default=None, help="the same as --dest")
    opn = csub.add_parser(
        "open", help="download a MemoryCapture and open its heap diff in `go tool pprof -http`"
    )
    opn.add_argument("names", nargs=1, metavar="CAPTURE")
    opn.add_argument("--no-browser", action="store_true", help="serve the pprof UI without opening a browser")
    for cmd in (lst, show, get, opn):
        cmd.add_argument("-n", "--namespace", default=None, help="the namespace (default: the context's)")
        cmd.add_argument("--context", default=None, help="the kubeconfig context to use")
        cmd.add_argument(
            "--kubeconfig", default=None, help="the kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
        )
    for reader in (w, lst, show, get):
        reader.add_argument(
            "--s3-endpoint",
            metavar="URL",
            help="S3 endpoint for an s3:// STORE (default $AWS_ENDPOINT_URL, else AWS); credentials come "
            "from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY or the usual AWS configuration",
        )
        reader.add_argument("--s3-region", metavar="REGION", help="the bucket's region (default us-east-1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "watch":
            return _watch(args)
        if args.command == "run":
            _require_extra("operator", ("kopf", "kubernetes", "boto3"), "memorywatch run")
            from memorywatch import operator_main

            return operator_main.run(args)
        return _captures(args)
    except UsageError as e:
        print(f"memorywatch: {e}", file=sys.stderr)
        return EXIT_USAGE


def _captures(args: argparse.Namespace) -> int:
    from memorywatch import captures_kube

    if captures_kube.kube_mode(args):
        return captures_kube.run(args)
    if args.captures_command != "list":
        if len(args.names) != 2:
            raise UsageError(
                f"captures {args.captures_command}: give CAPTURE (a MemoryCapture) or STORE CAPTURE"
            )
        args.store, args.capture = args.names
        if args.captures_command == "get":
            args.dest = args.output_dir or args.dest
    from memorywatch import captures_cli

    return captures_cli.run(args)


def _watch(args: argparse.Namespace) -> int:
    from memorywatch.captures_cli import open_store
    from memorywatch.engine.watcher import Watcher, WatchSettings
    from memorywatch.output import JsonLines, LiveTable, PlainLines
    from memorywatch.scrape import Limits, Scraper, TargetConfig, TLSConfig
    from memorywatch.scrape.config import redact_url
    from memorywatch.store import StoreError
    from memorywatch.workers import operator_memory_limit_bytes

    if args.rules:
        try:
            with open(args.rules, encoding="utf-8") as f:
                rules = load_rules_yaml(f.read())
        except OSError as e:
            raise UsageError(f"--rules {args.rules}: {e.strerror}") from None
        except ConfigError as e:
            raise UsageError(f"--rules {args.rules}:\n  " + "\n  ".join(e.messages)) from None
    else:
        rules = default_rules()
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in profiles if p not in PROFILE_SOURCES]
    if unknown:
        raise UsageError(
            f"--profiles: unknown profile(s) {', '.join(unknown)}; choose from {', '.join(PROFILE_SOURCES)}"
        )
    limit = None
    if args.memory_limit:
        try:
            limit = int(parse_quantity(args.memory_limit))
        except ValueError as e:
            raise UsageError(f"--memory-limit: {e}") from None
    token = os.environ.get("MEMORYWATCH_BEARER_TOKEN") or None
    if args.bearer_token_file:
        try:
            with open(args.bearer_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise UsageError(f"--bearer-token-file {args.bearer_token_file}: {e.strerror}") from None
        if not token:
            raise UsageError(f"--bearer-token-file {args.bearer_token_file}: the file is empty")
    if bool(args.cert_file) != bool(args.key_file):
        raise UsageError(
            "--cert-file and --key-file go together: give both for a client certificate, or neither"
        )
    tls = None
    if args.ca_file or args.cert_file or args.insecure_skip_verify:
        tls = TLSConfig(
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            insecure_skip_verify=args.insecure_skip_verify,
        )
    targets = []
    for text in args.targets:
        url = _target_url(text)
        try:
            targets.append(
                TargetConfig(
                    url=url,
                    pprof_path=args.pprof_path,
                    bearer_token=token,
                    tls=tls,
                    metrics_path=args.metrics_path or None,
                )
            )
        except ValueError as e:
            raise UsageError(f"TARGET {redact_url(url)!r}: {e}") from None
    settings = WatchSettings(
        interval_seconds=_duration("--interval", args.interval),
        duration_seconds=_duration("--duration", args.duration) if args.duration else None,
        profiles=profiles,
        cooldown_seconds=_duration("--cooldown", args.cooldown),
        exit_on_breach=args.exit_on_breach,
        memorywatch=args.name,
        limit_bytes=limit,
    )
    if settings.interval_seconds < 1:
        raise UsageError("--interval: must be at least 1s")
    try:
        store = open_store(args.store, s3_endpoint=args.s3_endpoint, s3_region=args.s3_region)
        store.check_writable()
    except StoreError as e:
        print(f"memorywatch: --store: {e}", file=sys.stderr)
        return EXIT_FAILURE

    if args.output == "json":
        renderer: JsonLines | LiveTable | PlainLines = JsonLines()
    elif sys.stdout.isatty():
        renderer = LiveTable()
    else:
        renderer = PlainLines()

    async def go() -> bool:
        async with Scraper(Limits.for_memory_limit(operator_memory_limit_bytes())) as scraper:
            watcher = Watcher(rules, store, scraper, settings, renderer)
            for target in targets:
                watcher.add_target(target.display_name, target)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, watcher.stop)
            await watcher.run()
            return watcher.breach_captured

    with renderer:
        captured = asyncio.run(go())
    return EXIT_BREACH if captured else EXIT_OK


def _require_extra(extra: str, modules: Sequence[str], what: str) -> None:
    """Refuse, with the install command, when an optional extra's packages are missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'memorywatch[{extra}]'"
        )
