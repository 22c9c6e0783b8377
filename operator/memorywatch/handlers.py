"""kopf glue only: each handler is a few lines delegating to the controller (operator_main.py starts kopf)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import kopf

from memorywatch import metrics
from memorywatch.api.capture_object import FINALIZER as CAPTURE_FINALIZER
from memorywatch.control.capture_files import delete_capture_files
from memorywatch.control.release import being_deleted
from memorywatch.control.sharding import ShardView
from memorywatch.control.watch import RECONCILE_SECONDS, ControllerFailed, WatchController
from memorywatch.k8s.client import CAPTURE_PLURAL, GROUP, PLURAL, VERSION, Kube, KubeError, NotFoundError
from memorywatch.k8s.portforward import close_forward, forwarded_url
from memorywatch.targets import PodInfo, pod_info

FINALIZER = "memorywatch.io/finalizer"
assert FINALIZER == CAPTURE_FINALIZER, "MemoryCaptures are created with kopf's finalizer already set"


def owned_pods(memo: Any, namespace: str, index: Mapping[str, Iterable[PodInfo]]) -> list[PodInfo]:
    """The namespace's pods this replica scrapes: all of them, or with sharding on (memo.shard, a
    `control.membership.MemberLeases`) those its current view assigns to it. Read at every reconcile, so an
    ownership change takes effect at the next one (within RECONCILE_SECONDS)."""
    pods = list(index.get(namespace, []))
    shard = getattr(memo, "shard", None)
    if shard is None:
        return pods
    view = shard.view
    return [p for p in pods if view.owns(namespace, p.name)]


def shard_view(memo: Any) -> Callable[[], ShardView] | None:
    """This replica's current shard view as the controller reads it, or None with sharding off."""
    shard = getattr(memo, "shard", None)
    if shard is None:
        return None
    return lambda: cast(ShardView, shard.view)


def handover_grace(memo: Any) -> float:
    """How long a pod moving from a live replica (a join) is held back before this one follows it: that
    replica's next membership read (a renewal period), its next reconcile, and 2 s for its status to reach us."""
    shard = getattr(memo, "shard", None)
    return float(shard.renew_seconds) + RECONCILE_SECONDS + 2.0 if shard is not None else 0.0


log = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="memorywatch.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="memorywatch.io", key="last-handled-configuration"
    )
    # MemoryWatch posts its own, aggregated events; kopf's per-handler log events would be noise.
    settings.posting.enabled = False
    # Long watches with a client timeout a little above the server's, so a silent API server is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 310
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60


@kopf.index("", "v1", "pods")
def mw_pods(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, PodInfo]:
    """Pods by namespace: a MemoryWatch only ever reads its own namespace's entry."""
    return {namespace or "": pod_info(dict(body))}


# How a daemon stops (kopf: the `stopped` flag, then after STOP_GRACE_SECONDS a cancellation, then up to
# STOP_TIMEOUT_SECONDS before it is abandoned). When the operator exits, the engine finishes a capture under way
# (a CPU profile of up to 60 s plus the other profiles) before it returns, so the grace covers a capture: a
# cancellation would abandon it. After a cancellation only the cleanup is left. A deleted watch's daemon does not
# wait for its capture and stops in moments (control/release.py). The chart's terminationGracePeriodSeconds is
# above the sum (docs/operator.md, "Shutdown"). A daemon that raises (ControllerFailed) is restarted by kopf after
# `backoff`.
STOP_GRACE_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0
RESTART_BACKOFF_SECONDS = 10.0


@kopf.daemon(
    GROUP,
    VERSION,
    PLURAL,
    cancellation_backoff=STOP_GRACE_SECONDS,
    cancellation_timeout=STOP_TIMEOUT_SECONDS,
    backoff=RESTART_BACKOFF_SECONDS,
    errors=kopf.ErrorsMode.TEMPORARY,
)
async def watch_memorywatch(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    uid: str,
    status: kopf.Status,
    stopped: kopf.DaemonStopped,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    namespace = namespace or ""
    mw_pods: kopf.Index[str, PodInfo] = kwargs["mw_pods"]
    controller = WatchController(
        kube=memo.kube,
        scraper=memo.scraper,
        make_store=memo.make_store,
        actions=memo.actions,
        namespace=namespace,
        name=name,
        uid=uid,
        forward=lambda ns, pod, port, scheme: forwarded_url(memo.kube, ns, pod, port, scheme=scheme),
        close_forward=close_forward,
        notifier=getattr(memo, "notifier", None),
        shard=shard_view(memo),
        handover_grace_seconds=handover_grace(memo),
    )
    controller.restore(dict(status))
    metrics.WATCHES.inc()
    logger.info("watching MemoryWatch %s/%s", namespace, name)
    try:
        await controller.run(lambda: body, lambda: owned_pods(memo, namespace, mw_pods), stopped)
    except ControllerFailed as e:
        logger.error("%s", e)
        raise kopf.TemporaryError(str(e), delay=RESTART_BACKOFF_SECONDS) from e
    finally:
        metrics.WATCHES.dec()
        task = asyncio.current_task()
        if task is not None and being_deleted(body):
            task.add_done_callback(lambda _: nudge_after_stop(memo.kube, namespace, name))


@kopf.on.delete(GROUP, VERSION, CAPTURE_PLURAL)
async def delete_memorycapture_files(
    body: kopf.Body, retry: int, runtime: datetime.timedelta, memo: Any, **_: Any
) -> None:
    """Deleting a MemoryCapture deletes its files (control/capture_files.py); kopf keeps the finalizer and calls
    again after the delay while the store is unreachable (bounded: given up after an hour)."""
    again = await delete_capture_files(
        dict(body),
        volume=memo.volume,
        make_store=memo.make_store,
        events=memo.kube,
        retry=retry,
        elapsed_seconds=runtime.total_seconds(),
    )
    if again is not None:
        raise kopf.TemporaryError(again.message, delay=again.delay_seconds)


# kopf removes the finalizer of a deleted object only once its daemon has exited, and it looks again only when
# the object changes or its own timer fires: after STOP_GRACE_SECONDS, and after a cancellation after
# STOP_TIMEOUT_SECONDS more. So a daemon that exits a moment after kopf looked would hold the object for up to
# two minutes. Annotating the object once the daemon has exited is that change: kopf looks again at once and
# releases the object (docs/operator.md, "Deleting a MemoryWatch").
STOPPED_ANNOTATION = "memorywatch.io/stopped-at"
_nudges: set[asyncio.Task[None]] = set()


def nudge_after_stop(kube: Kube, namespace: str, name: str) -> asyncio.Task[None]:
    """Called once the daemon's task is done: annotate the deleted MemoryWatch so kopf releases it now."""

    async def nudge() -> None:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        try:
            await kube.annotate(namespace, name, {STOPPED_ANNOTATION: stamp})
        except NotFoundError:
            pass  # already released
        except KubeError as e:
            log.warning(
                "%s/%s stopped, but kopf could not be told so (%s); it looks again by itself",
                namespace,
                name,
                e,
            )

    task = asyncio.ensure_future(nudge())
    _nudges.add(task)
    task.add_done_callback(_nudges.discard)
    return task
