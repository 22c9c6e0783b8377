"""`memorywatch run`: start kopf with the MemoryWatch handlers, the health endpoints and the metrics server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import start_http_server

from memorywatch.actions.config import add_action_arguments, limits_from_args, policy_from_args
from memorywatch.api.spec import WatchSpec
from memorywatch.control.shard_config import add_shard_arguments, shard_problem, start_sharding
from memorywatch.notify.config import add_notify_arguments
from memorywatch.notify.config import limits_from_args as notify_limits_from_args
from memorywatch.store import CaptureStore, FilesystemStore, StoreError, StoreUnavailable
from memorywatch.store.policy import (
    S3Policy,
    S3PolicyError,
    add_s3_policy_arguments,
    check_credentials,
    check_endpoint,
    system_resolver,
)
from memorywatch.store.policy import policy_from_args as s3_policy_from_args
from memorywatch.store.quota import QuotaFilesystemStore, add_retention_arguments
from memorywatch.store.quota import limits_from_args as retention_from_args
from memorywatch.store.retention import WatchLimits

if TYPE_CHECKING:  # aiohttp comes with the `operator` extra: imported when `run` starts, not for `--help`
    from aiohttp import web


log = logging.getLogger("memorywatch")
VOLUME_PERIOD_SECONDS = 60.0


async def _measure_volume(root: str) -> None:
    """Size and free bytes of the capture volume (statvfs), for the StoreFull alert; runs until cancelled."""
    from memorywatch import metrics

    while True:
        try:
            st = await asyncio.to_thread(os.statvfs, root)
        except OSError as e:  # not mounted yet, or not a directory: said, and tried again
            log.debug("cannot statvfs the capture volume %s: %s", root, e)
        else:
            metrics.STORE_CAPACITY_BYTES.set(st.f_blocks * st.f_frsize)
            metrics.STORE_FREE_BYTES.set(st.f_bavail * st.f_frsize)
        await asyncio.sleep(VOLUME_PERIOD_SECONDS)


@dataclasses.dataclass(frozen=True)
class DefaultS3:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    force_path_style: bool


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="serve MemoryWatches in every namespace"
    )
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="serve this namespace (repeatable)"
    )
    p.add_argument(
        "--store",
        default="/var/lib/memorywatch/captures",
        help="the default capture store directory (the PVC)",
    )
    p.add_argument("--health-port", type=int, default=8080, help="/healthz and /readyz (0 disables)")
    p.add_argument("--metrics-port", type=int, default=9090, help="Prometheus /metrics (0 disables)")
    p.add_argument(
        "--bind-address",
        default=os.environ.get("MEMORYWATCH_BIND_ADDRESS", "0.0.0.0"),
        help="address the health and metrics servers listen on",
    )
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument(
        "--default-s3-bucket", default=None, help="send captures of watches with `storage: {}` to this bucket"
    )
    p.add_argument("--default-s3-prefix", default="")
    p.add_argument("--default-s3-endpoint", default=None)
    p.add_argument("--default-s3-region", default=None)
    p.add_argument("--default-s3-force-path-style", action="store_true")
    p.add_argument(
        "--files-port",
        type=int,
        default=0,
        help="serve the capture-files API (files.memorywatch.io, behind the kube-apiserver) here (0: off)",
    )
    p.add_argument("--files-tls-cert", default="/etc/memorywatch/files-tls/tls.crt")
    p.add_argument("--files-tls-key", default="/etc/memorywatch/files-tls/tls.key")
    p.add_argument(
        "--peering", default=None, help="kopf peering name for several replicas (HA); default standalone"
    )
    add_shard_arguments(p)
    add_action_arguments(p)  # guardrails (issue 8)
    add_s3_policy_arguments(p)  # guardrails (issue 8)
    add_retention_arguments(p)  # guardrails (issue 8)
    add_notify_arguments(p)  # spec.notify sinks (issue 12)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The kubernetes client logs request bodies at DEBUG, and those can carry Secret data: never below INFO.
    logging.getLogger("kubernetes").setLevel(max(logging.INFO, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
    # One line per HTTP request to every target would drown everything else.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


class Health:
    """/healthz: the event loop answers. /readyz: kopf has started and the API server answered recently."""

    def __init__(self) -> None:
        self.started = False
        self.api_ok_at = 0.0

    async def healthz(self, _: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        from aiohttp import web

        if self.started and time.time() - self.api_ok_at < 120:
            return web.Response(text="ready\n")
        return web.Response(
            status=503, text="not ready: starting, or the API server has not answered for 2 minutes\n"
        )


def run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_format, args.log_level)
    if not args.all_namespaces and not args.namespace:
        ns = os.environ.get("MEMORYWATCH_POD_NAMESPACE")
        if not ns:
            print("memorywatch run: give --all-namespaces or --namespace NS (repeatable)", file=sys.stderr)
            return 2
        args.namespace = [ns]
    try:  # guardrails (issue 8): refuse nonsense limits before starting
        policy_from_args(args), limits_from_args(args), s3_policy_from_args(args)
        notify_limits_from_args(args)
    except ValueError as e:
        print(f"memorywatch run: {e}", file=sys.stderr)
        return 2
    if (problem := shard_problem(args)) is not None:
        print(f"memorywatch run: {problem}", file=sys.stderr)
        return 2
    # GUARDRAILS CALL SITE (issue 8): the operator's volume prunes by age and quota before each capture.
    default_store = QuotaFilesystemStore(args.store, retention_from_args(args))
    try:
        default_store.check_writable()
    except StoreError as e:  # reported, and the operator still starts: S3 watches do not need it
        log.error(
            "the default capture store %s is not writable: %s; captures will fail until it is", args.store, e
        )
    s3 = (
        DefaultS3(
            args.default_s3_bucket,
            args.default_s3_prefix.strip("/"),
            args.default_s3_endpoint,
            args.default_s3_region,
            args.default_s3_force_path_style,
        )
        if args.default_s3_bucket
        else None
    )
    try:
        return asyncio.run(_main(args, default_store, s3))
    except KeyboardInterrupt:
        return 130


async def _main(
    args: argparse.Namespace, default_store: FilesystemStore, default_s3: DefaultS3 | None
) -> int:
    import kopf
    from aiohttp import web

    import memorywatch.handlers  # noqa: F401 - registers the handlers
    from memorywatch.control import kopf_toggles

    kopf_toggles.install()  # before kopf starts: its index pre-population is O(pods²) otherwise
    from memorywatch.actions.config import ledger_namespace
    from memorywatch.actions.ledger import LeaseLedger
    from memorywatch.actions.runner import KubeActions
    from memorywatch.control.lag import measure_lag
    from memorywatch.control.supervise import Supervisor
    from memorywatch.k8s import Kube, load_api_client
    from memorywatch.notify import Notifier
    from memorywatch.scrape import Limits, Scraper
    from memorywatch.workers import operator_memory_limit_bytes

    health = Health()
    runners: list[web.AppRunner] = []
    if args.health_port:
        app = web.Application()
        app.router.add_get("/healthz", health.healthz)
        app.router.add_get("/readyz", health.readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.bind_address, args.health_port).start()
        runners.append(runner)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.bind_address)

    api = await asyncio.to_thread(load_api_client)
    kube = Kube(api)

    async def make_store(spec: WatchSpec, namespace: str) -> CaptureStore:
        return await build_store(kube, spec, namespace, default_store, default_s3, s3_policy_from_args(args))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def probe_api() -> None:
        from kubernetes import client as k8s

        version = k8s.VersionApi(api)
        while True:
            with contextlib.suppress(Exception):
                await kube.call("get version", version.get_code)
                health.api_ok_at = time.time()
            await asyncio.sleep(15)

    prober = asyncio.create_task(probe_api())
    process_tasks = Supervisor(on_fault=lambda f: None, on_recovered=lambda task, target: None)
    if args.files_port:
        from memorywatch.control.file_server import serve_files

        # Not supervised (a restart would bind the port twice): it handles its own failures and runs until closed.
        files_task = asyncio.create_task(serve_files(args, kube, default_store.root, make_store, runners))
    process_tasks.spawn("event-loop-lag", measure_lag)
    process_tasks.spawn("store-volume", lambda: _measure_volume(args.store))
    # One notifier for all watches (a lane each); None when the chart disabled notifications.
    notifier = None if args.notify_disabled else Notifier(limits=notify_limits_from_args(args))
    if notifier is not None:
        await notifier.start()
    async with Scraper(Limits.for_memory_limit(operator_memory_limit_bytes())) as scraper:
        # guardrails (issue 8): the runner enforces the operator-wide limits and counts actions in a Lease.
        ledger = LeaseLedger(kube, ledger_namespace(args), limits_from_args(args))
        act_runner = KubeActions(kube, policy=policy_from_args(args), ledger=ledger)
        shard = await start_sharding(args, kube, process_tasks)
        memo = kopf.Memo(
            kube=kube,
            scraper=scraper,
            make_store=make_store,
            actions=act_runner,
            notifier=notifier,
            volume=default_store,
            shard=shard,
        )
        ready = asyncio.Event()
        operator = asyncio.create_task(
            kopf.operator(
                clusterwide=args.all_namespaces,
                namespaces=args.namespace or (),
                standalone=args.peering is None,
                peering_name=args.peering,
                priority=int.from_bytes(os.urandom(2), "big") if args.peering else 0,
                memo=memo,
                ready_flag=ready,
                stop_flag=stop,
            )
        )
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(
                {operator, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        health.started = True
        log.info(
            "memorywatch operator started (%s)",
            "all namespaces" if args.all_namespaces else ", ".join(args.namespace),
        )
        try:
            await operator
        finally:
            prober.cancel()
            if args.files_port:
                files_task.cancel()
                await asyncio.gather(files_task, return_exceptions=True)
            await process_tasks.close()
            if notifier is not None:
                await notifier.close()
            if shard is not None:
                await shard.leave()
            for r in runners:
                await r.cleanup()
    return 0


async def build_store(
    kube: Any,
    spec: WatchSpec,
    namespace: str,
    default_store: FilesystemStore,
    default_s3: DefaultS3 | None,
    s3_policy: S3Policy | None = None,
) -> CaptureStore:
    """The store a MemoryWatch asked for: its own S3 bucket (credentials from a Secret in its namespace), the
    operator's default S3 bucket, or the operator's directory. S3 falls back to the directory when it is down,
    but a watch's S3 settings the policy refuses fail with the reason (no fallback)."""
    if isinstance(default_store, QuotaFilesystemStore):  # GUARDRAILS CALL SITE (issue 8): per-watch retention
        default_store = default_store.for_watch(
            WatchLimits(spec.capture.retention_max_age_seconds, spec.capture.retention_max_bytes)
        )
    s3 = spec.capture.s3
    if s3 is None and default_s3 is None:
        return default_store
    from memorywatch.store.s3 import FallbackStore, S3Store

    if s3 is not None:
        # GUARDRAILS CALL SITE (issue 8): S3 by policy: endpoint allow-list, no internal addresses, own credentials.
        policy = s3_policy if s3_policy is not None else S3Policy()
        try:
            check_credentials(s3.bucket, bool(s3.credentials_secret), policy)
            checked = await asyncio.to_thread(check_endpoint, s3.endpoint, policy, system_resolver)
        except S3PolicyError as e:
            raise StoreUnavailable(str(e)) from None
        key_id = secret = None
        if s3.credentials_secret:
            from memorywatch.api.consent import ConsentTarget, secret_problem
            from memorywatch.k8s import ForbiddenError

            try:
                key_id = await kube.secret_value(namespace, s3.credentials_secret, s3.access_key_id_key)
                secret = await kube.secret_value(namespace, s3.credentials_secret, s3.secret_access_key_key)
            except ForbiddenError as e:
                raise StoreUnavailable(secret_problem(
                    e, forbidden=True, namespace=namespace, secret=s3.credentials_secret,
                    field="spec.capture.storage.s3.credentialsSecretRef", target=ConsentTarget.from_env(os.environ),
                )) from None  # fmt: skip
        primary = S3Store(
            s3.bucket,
            s3.prefix,
            endpoint_url=s3.endpoint,
            region=s3.region,
            access_key_id=key_id.strip() if key_id else None,
            secret_access_key=secret.strip() if secret else None,
            force_path_style=s3.force_path_style,
            pinned_addresses=checked,  # no second DNS answer (rebinding) is ever used
        )
    else:
        assert default_s3 is not None
        primary = S3Store(
            default_s3.bucket,
            default_s3.prefix,
            endpoint_url=default_s3.endpoint,
            region=default_s3.region,
            force_path_style=default_s3.force_path_style,
        )
    return FallbackStore(primary, default_store)
