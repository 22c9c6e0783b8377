"""The Scraper: the per-interval cheap sample of a Go target, and the on-demand profiles, over pooled HTTP."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

from memorywatch.pprof import jobs
from memorywatch.pprof.errors import NotPprofIndex, ProfileTooLarge
from memorywatch.pprof.expvar import ExpvarSnapshot
from memorywatch.pprof.goroutine_ids import MAX_DUMP_BYTES, GoroutineIds, GoroutineIdsParser
from memorywatch.pprof.goroutines import GoroutineProfile
from memorywatch.pprof.heap_text import HeapText, HeapTextParser
from memorywatch.pprof.index import parse_index
from memorywatch.pprof.profiles import ProfileInfo
from memorywatch.pprof.prometheus_text import PromSnapshot
from memorywatch.rules.model import Probe
from memorywatch.samples import Sample
from memorywatch.scrape import procrss, transport
from memorywatch.scrape.config import Limits, TargetConfig
from memorywatch.scrape.errors import (
    NotAGoTarget,
    OverBudget,
    ResponseTooLarge,
    ScrapeError,
    ScrapeTimeout,
    TargetUnreachable,
)
from memorywatch.scrape.pool import ClientPool
from memorywatch.scrape.sniff import describe_body, foreign_body_description
from memorywatch.workers import WorkerPool

log = logging.getLogger(__name__)

_PROFILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

RssPreference = Literal["prometheus", "proc", "maxrss"]
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class TextCapture:
    """A text endpoint as read. `truncated` is True when the body went past `limit_bytes` and `data` holds
    only its first `limit_bytes` bytes: a partial goroutine dump is still evidence, so it is not an error."""

    data: bytes
    truncated: bool
    limit_bytes: int


@dataclasses.dataclass(slots=True)
class _TargetState:
    """What the scraper remembers about one target: the capabilities it offers, nothing else."""

    metrics: bool | None = None  # None: not asked yet; False: absent, re-probed after metrics_reprobe_seconds
    metrics_checked_at: float = 0.0


class Scraper:
    """Scrapes Go targets over HTTP. Use as `async with Scraper() as s:`; safe to share between many tasks
    on one event loop. One aiohttp session per TLS setting, with each target's connections kept alive (scrape/pool.py); per-target state is a few capability bits.

    `proc_rss` reads the current RSS of loopback targets from /proc (Linux; see procrss), preferred over
    MaxRSS but not over the target's own Prometheus figure. `max_targets` bounds the remembered state; the
    least recently scraped target is forgotten first (it is simply probed again if it comes back).

    `max_concurrent_samples` bounds the samples in flight at once; the rest wait their turn before their
    timeouts start. Without it, a thousand targets started together (or all retried together after an
    outage) stream a thousand bodies at once: memory spikes and every scrape slows towards its total
    timeout, so they fail together and are retried together. One core does ~100-150 samples/s, so 64 in
    flight keep it busy while the network waits.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        proc_rss: bool = True,
        max_targets: int = 100_000,
        max_concurrent_samples: int = 64,
    ) -> None:
        self.limits = limits or Limits()
        self._sample_slots = asyncio.Semaphore(max_concurrent_samples)
        self._proc_rss = proc_rss
        self._proc = procrss.ProcRssReader()  # socket table and socket->pid map shared by all targets
        self._max_targets = max_targets
        self._pool: ClientPool | None = None
        self.workers = WorkerPool(self.limits.pool_limits)
        self._states: collections.OrderedDict[TargetConfig, _TargetState] = collections.OrderedDict()

    async def __aenter__(self) -> Scraper:
        self._pool = ClientPool(self.limits)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        try:
            if pool is not None:
                await pool.aclose()
        finally:
            await self.workers.aclose()

    def forget(self, target: TargetConfig) -> None:
        """Drop what is remembered about a target that is gone (a deleted pod)."""
        self._states.pop(target, None)
        self._proc.forget(target.host, target.port)

    @property
    def remembered_targets(self) -> int:
        """How many targets have capability state (bounded by `max_targets`)."""
        return len(self._states)

    @property
    def open_sessions(self) -> int:
        """How many HTTP sessions are open: one per TLS setting in use (idle ones close after the keep-alive
        expiry; each target's connections close when idle that long)."""
        return self._pool.origin_count if self._pool is not None else 0

    # -- the per-interval sample -------------------------------------------------------------------------

    async def sample(
        self,
        target: TargetConfig,
        *,
        probes: frozenset[Probe] = frozenset(),
        now: Callable[[], float] = time.time,
    ) -> Sample:
        """Index page (goroutine count), streamed heap?debug=1 (MemStats, live heap) and /metrics when the
        target offers it, one after the other over one kept-alive connection; goroutine?debug=1 when
        `Probe.GOROUTINE_STACKS` is asked (and the dump for `GOROUTINE_DUMP`) next to them.
        Raises exactly one ScrapeError subclass on failure."""
        async with self._sample_slots:
            return await self._sample(target, probes, now)

    async def _sample(
        self, target: TargetConfig, probes: frozenset[Probe], now: Callable[[], float]
    ) -> Sample:
        state = self._state(target)
        started = now()
        ask_metrics = target.metrics_path is not None and (
            state.metrics is not False
            or started - state.metrics_checked_at >= self.limits.metrics_reprobe_seconds
        )
        # The requests of every interval run one after the other, so they share one kept-alive connection
        # per target (each connection kept costs ~12 KiB of client state for the target's lifetime, see
        # docs/scaling.md); the probes a rule asks for now and then run next to them.
        in_turn: dict[str, Coroutine[Any, Any, object]] = {
            "index": self._index(target),
            "heap": self._heap(target, force_gc=Probe.FRESH_GC in probes),
        }
        if ask_metrics:
            in_turn["metrics"] = self._metrics(target)
        probing: dict[str, Coroutine[Any, Any, object]] = {}
        if Probe.GOROUTINE_STACKS in probes:
            probing["goroutines"] = self._goroutines(target)
        if Probe.GOROUTINE_DUMP in probes:
            probing["dump"] = self._goroutine_ids(target)
        deadline = asyncio.get_running_loop().time() + self.limits.total_timeout_seconds
        serial_jobs = _one_by_one(list(in_turn.values()), deadline)
        outcomes = await asyncio.gather(serial_jobs, *probing.values(), return_exceptions=True)
        serial = outcomes[0]
        if isinstance(serial, BaseException):
            raise serial  # not one of the requests' own outcomes (those are in the list): a cancellation
        assert isinstance(serial, list)
        results = {
            **dict(zip(in_turn, serial, strict=True)),
            **dict(zip(probing, outcomes[1:], strict=True)),
        }

        prom = self._settle_metrics(target, state, results.pop("metrics", None), started)
        for name in ("index", "heap", "goroutines"):  # the most telling failure first
            outcome = results.get(name)
            if isinstance(outcome, BaseException):
                raise outcome
        counts = results["index"]
        heap = results["heap"]
        assert isinstance(counts, dict) and isinstance(heap, HeapText)
        goroutine_profile = results.get("goroutines")
        ids = results.get("dump")
        if isinstance(
            ids, ScrapeError
        ):  # identity only confirms a verdict: a failed dump is no failed sample
            log.debug("%s: goroutine dump skipped: %s", target.display_name, ids)
        elif isinstance(ids, BaseException):
            raise ids
        assert goroutine_profile is None or isinstance(goroutine_profile, GoroutineProfile)

        rss_bytes, rss_source = self._rss(target, state, prom, heap)
        started_at: float | None = None
        if prom is not None and prom.process_start_seconds is not None:
            started_at = float(prom.process_start_seconds)
        elif rss_source == "proc":  # the process on this machine that `_rss` just found
            started_at = self._proc.start_time(target.host, target.port)

        def profiled(estimate: int) -> int | None:
            # MemProfileRate=0: the heap profile is empty, and its zero totals are not a live heap of 0.
            return estimate if heap.sampling_rate_bytes > 0 else None

        return Sample(
            target=target.display_name,
            time=now(),
            goroutines=counts.get("goroutine"),
            memstats=heap.memstats.without_arrays() if heap.memstats is not None else None,
            heap_live_bytes=prom.heap_live_bytes
            if prom and prom.heap_live_bytes is not None
            else profiled(heap.live_bytes_estimate),
            heap_live_objects=profiled(heap.live_objects_estimate),
            heap_profile_rate=heap.sampling_rate_bytes,
            heap_sites=heap.top_sites if heap.sampling_rate_bytes > 0 else None,
            rss_bytes=rss_bytes,
            rss_source=rss_source,
            finalizers_queued=prom.finalizers_queued if prom else None,
            finalizers_executed=prom.finalizers_executed if prom else None,
            threads=prom.threads if prom else None,
            process_start_seconds=prom.process_start_seconds if prom else None,
            process_started_at=started_at,
            goroutine_profile=goroutine_profile,
            goroutine_ids=ids if isinstance(ids, GoroutineIds) else None,
        )

    def _state(self, target: TargetConfig) -> _TargetState:
        state = self._states.get(target)
        if state is None:
            state = self._states[target] = _TargetState()
            while len(self._states) > self._max_targets:
                gone, _ = self._states.popitem(last=False)
                self._proc.forget(gone.host, gone.port)
        else:
            self._states.move_to_end(target)
        return state

    def _settle_metrics(
        self, target: TargetConfig, state: _TargetState, outcome: object, started: float
    ) -> PromSnapshot | None:
        """Remember whether /metrics exists. A definite answer (404, not Prometheus text, refused auth) marks
        it absent until the re-probe time; a transient failure changes nothing and just skips it once."""
        if outcome is None:
            return None
        if isinstance(outcome, PromSnapshot):
            state.metrics, state.metrics_checked_at = True, started
            return outcome
        if isinstance(outcome, ScrapeTimeout | TargetUnreachable):
            log.debug("%s: /metrics skipped this time: %s", target.display_name, outcome)
            return None
        if isinstance(outcome, ScrapeError):
            if state.metrics is not False:
                log.info(
                    "%s: no usable Prometheus metrics, using other RSS sources: %s",
                    target.display_name,
                    outcome,
                )
            state.metrics, state.metrics_checked_at = False, started
            return None
        assert isinstance(outcome, BaseException)
        raise outcome

    def _rss(
        self, target: TargetConfig, state: _TargetState, prom: PromSnapshot | None, heap: HeapText
    ) -> tuple[int | None, str | None]:
        if prom is not None and prom.rss_bytes is not None:
            return prom.rss_bytes, "prometheus"
        if self._proc_rss and target.read_proc_rss and target.is_loopback:
            rss = self._proc.rss(target.host, target.port)
            if rss is not None:
                return rss, "proc"
        if heap.memstats is not None and heap.memstats.max_rss is not None:
            return heap.memstats.max_rss, "maxrss"
        return None, None

    async def _index(self, target: TargetConfig) -> dict[str, int]:
        path = target.pprof("")

        async def consume(body: transport.Body) -> dict[str, int]:
            data = await body.read()
            seen = foreign_body_description(body.content_type, data)
            if seen is not None:
                raise NotAGoTarget(body.target, body.path, seen)
            try:
                return parse_index(data.decode("utf-8", "replace"))
            except NotPprofIndex:
                raise NotAGoTarget(body.target, body.path, describe_body(body.content_type, data)) from None

        return await self._get(target, path, consume, limit_bytes=self.limits.max_text_bytes)

    async def _heap(self, target: TargetConfig, *, force_gc: bool = False) -> HeapText:
        limits = self.limits

        async def consume(body: transport.Body) -> HeapText:
            parser = HeapTextParser(memstats_arrays=False)  # a sample keeps no PauseNs/PauseEnd
            checked = False
            spent = 0.0  # seconds of parsing on the event loop; bounded by max_inline_parse_seconds
            async for batch in body.line_batches(limits.max_line_bytes):
                started = time.perf_counter()
                if batch and max(map(len, batch)) > limits.max_line_bytes:
                    raise OverBudget(
                        body.target,
                        body.path,
                        f"a line of more than {limits.max_line_bytes} bytes (Go prints MemStats arrays"
                        " of 256 numbers, far below; limit max_line_bytes)",
                        "max_line_bytes",
                        limits.max_line_bytes,
                    )
                if not checked:  # the first non-blank line tells a foreign body (HTML, JSON) apart
                    for raw in batch:
                        line = transport.decode_line(raw)
                        if raw.startswith(b"#\t") or not line.strip():
                            continue
                        checked = True
                        if line.lstrip().startswith(("<", "{", "[")):
                            raise NotAGoTarget(body.target, body.path, describe_body(body.content_type, raw))
                        break
                # Frame lines (most of the body) are dropped and records totalled without per-line work.
                parser.feed_lines(batch)
                spent += time.perf_counter() - started
                if spent > limits.max_inline_parse_seconds:
                    raise OverBudget(
                        body.target,
                        body.path,
                        f"parsing heap?debug=1 took more than {limits.max_inline_parse_seconds:g}s of CPU"
                        " (limit max_inline_parse_seconds)",
                        "max_inline_parse_seconds",
                        limits.max_inline_parse_seconds,
                    )
                await asyncio.sleep(0)  # let other targets' work run between network chunks
            return parser.result()

        # gc=1 runs one runtime.GC() first, so the live heap in the answer is fresh (Probe.FRESH_GC).
        params = {"debug": 1, "gc": 1} if force_gc else {"debug": 1}
        return await self._get(
            target, target.pprof("heap"), consume, params=params, limit_bytes=self.limits.max_text_bytes
        )

    async def _goroutines(self, target: TargetConfig) -> GoroutineProfile:
        async def consume(body: transport.Body) -> GoroutineProfile:
            data = await body.read()
            seen = foreign_body_description(body.content_type, data)
            if seen is not None:
                raise NotAGoTarget(body.target, body.path, seen)
            return await self._parse(data, jobs.goroutines, data, self.limits.parse_budget)

        return await self._get(
            target,
            target.pprof("goroutine"),
            consume,
            params={"debug": 1},
            limit_bytes=self.limits.max_text_bytes,
        )

    async def _goroutine_ids(self, target: TargetConfig) -> GoroutineIds:
        """goroutine?debug=2 streamed for its header lines only, cut at MAX_DUMP_BYTES (then incomplete)."""

        async def consume(body: transport.Body) -> GoroutineIds:
            parser = GoroutineIdsParser()
            async for batch in body.line_batches():
                for line in batch:
                    parser.feed(line)
            return parser.result(complete=not body.truncated)

        return await self._get(
            target,
            target.pprof("goroutine"),
            consume,
            params={"debug": 2},
            limit_bytes=min(MAX_DUMP_BYTES, self.limits.max_stacks_bytes),
            limit_name="max_stacks_bytes",
            truncate_at_cap=True,
        )

    async def _metrics(self, target: TargetConfig) -> PromSnapshot:
        assert target.metrics_path is not None

        async def consume(body: transport.Body) -> PromSnapshot:
            data = await body.read()
            seen = foreign_body_description(body.content_type, data)
            if seen is not None:
                raise NotAGoTarget(body.target, body.path, seen)
            return await self._parse(data, jobs.metrics, data)

        return await self._get(target, target.metrics_path, consume, limit_bytes=self.limits.max_text_bytes)

    async def _parse(self, data: bytes, fn: Callable[..., T], *args: Any) -> T:
        """Small bodies are parsed here (a few ms); larger ones in a bounded worker process, so a big or
        hostile body costs only its own scrape, never the event loop."""
        if len(data) <= self.limits.max_inline_parse_bytes:
            return fn(*args)
        return await self.workers.run(fn, *args)

    async def parse_in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a `memorywatch.pprof.jobs` function in the scraper's bounded workers (captures use this for
        profile diffs). Raises memorywatch.workers.WorkerError subclasses or the job's own PprofError."""
        return await self.workers.run(fn, *args)

    # -- on demand ---------------------------------------------------------------------------------------

    async def fetch_profile(
        self,
        target: TargetConfig,
        name: str,
        *,
        params: Mapping[str, str | int] | None = None,
        validate: bool = True,
        max_bytes: int | None = None,
    ) -> bytes:
        """A protobuf profile exactly as served (`heap`, `allocs`, `goroutine`, `block`, `mutex`,
        `threadcreate`, ...; `cpu` means `profile?seconds=N`, N defaulting to Limits.cpu_profile_seconds).

        With `validate` (the default) the bytes are decoded in a bounded worker before they are returned:
        they must gunzip under max_decompressed_bytes, hold at most max_profile_samples samples and parse
        as a profile, so a corrupt profile never becomes a capture file silently. `validate=False` only
        checks that the body looks like gzip and stays under `max_bytes` (default max_profile_bytes): what
        a baseline needs, parsed later only if a capture diffs against it.
        """
        data, _ = await self._fetch_profile(target, name, params, validate=validate, max_bytes=max_bytes)
        return data

    async def fetch_profile_info(
        self, target: TargetConfig, name: str, *, params: Mapping[str, str | int] | None = None
    ) -> tuple[bytes, ProfileInfo]:
        """Like fetch_profile, and the summary of the profile found while validating it."""
        data, info = await self._fetch_profile(target, name, params, validate=True, max_bytes=None)
        assert info is not None
        return data, info

    async def _fetch_profile(
        self,
        target: TargetConfig,
        name: str,
        params: Mapping[str, str | int] | None,
        *,
        validate: bool,
        max_bytes: int | None,
    ) -> tuple[bytes, ProfileInfo | None]:
        query = dict(params or {})
        if not _PROFILE_NAME.fullmatch(name):
            raise ValueError(f"not a profile name: {name!r}")
        if str(query.get("debug", "0")) != "0":
            raise ValueError("fetch_profile returns protobuf profiles; use fetch_text for debug=N")
        if name == "cpu":
            query.setdefault("seconds", self.limits.cpu_profile_seconds)
            path = target.pprof("profile")
        else:
            path = target.pprof(name)
        extra_seconds = float(query["seconds"]) if "seconds" in query else 0.0
        limit = max_bytes if max_bytes is not None else self.limits.max_profile_bytes
        limit_name = "max_profile_bytes" if max_bytes is None else "max_baseline_bytes"

        async def consume(body: transport.Body) -> tuple[bytes, ProfileInfo | None]:
            data = await body.read()
            seen = foreign_body_description(body.content_type, data)
            if seen is not None:
                raise NotAGoTarget(body.target, body.path, seen)
            if not validate:
                if not data.startswith(b"\x1f\x8b"):
                    raise NotAGoTarget(body.target, body.path, describe_body(body.content_type, data))
                return data, None
            try:
                info = await self.workers.run(jobs.check_profile, data, self.limits.parse_budget)
            except ProfileTooLarge:
                cap = self.limits.max_decompressed_bytes
                raise ResponseTooLarge(body.target, body.path, "max_decompressed_bytes", cap) from None
            return data, info

        return await self._get(
            target,
            path,
            consume,
            params=query,
            limit_bytes=limit,
            limit_name=limit_name,
            extra_seconds=extra_seconds,
        )

    async def fetch_text(
        self,
        target: TargetConfig,
        name: str,
        *,
        params: Mapping[str, str | int] | None = None,
        max_bytes: int | None = None,
    ) -> TextCapture:
        """A text endpoint such as `goroutine?debug=2`, capped at `max_bytes` (default max_stacks_bytes).
        Past the cap the first `max_bytes` bytes come back with `truncated=True` instead of an error."""
        if not _PROFILE_NAME.fullmatch(name):
            raise ValueError(f"not a profile name: {name!r}")
        limit = max_bytes if max_bytes is not None else self.limits.max_stacks_bytes

        async def consume(body: transport.Body) -> TextCapture:
            data = await body.read()
            seen = foreign_body_description(body.content_type, data)
            if seen is not None:
                raise NotAGoTarget(body.target, body.path, seen)
            return TextCapture(data=data, truncated=body.truncated, limit_bytes=limit)

        return await self._get(
            target,
            target.pprof(name),
            consume,
            params=params,
            limit_bytes=limit,
            limit_name="max_stacks_bytes",
            truncate_at_cap=True,
        )

    async def expvar(self, target: TargetConfig) -> ExpvarSnapshot:
        """/debug/vars parsed (MemStats with Go names, the command line). Costs the target a stop-the-world."""

        async def consume(body: transport.Body) -> ExpvarSnapshot:
            data = await body.read()
            if body.content_type == "text/html" or data.lstrip().startswith(b"<"):
                raise NotAGoTarget(body.target, body.path, describe_body(body.content_type, data))
            return await self._parse(data, jobs.expvar, data)

        return await self._get(target, target.expvar_path, consume, limit_bytes=self.limits.max_text_bytes)

    async def _get(
        self,
        target: TargetConfig,
        path: str,
        consume: Callable[[transport.Body], Coroutine[Any, Any, transport.T]],
        *,
        params: Mapping[str, str | int] | None = None,
        limit_bytes: int,
        limit_name: str = "max_text_bytes",
        truncate_at_cap: bool = False,
        extra_seconds: float = 0.0,
    ) -> transport.T:
        if self._pool is None:
            raise RuntimeError("Scraper used outside `async with Scraper() as scraper:`")
        return await transport.get(
            self._pool,
            self.limits,
            target,
            path,
            consume,
            params=params,
            limit_bytes=limit_bytes,
            limit_name=limit_name,
            truncate_at_cap=truncate_at_cap,
            extra_seconds=extra_seconds,
        )


async def _one_by_one(jobs: list[Coroutine[Any, Any, object]], deadline: float) -> list[object]:
    """Await `jobs` in order, each one's exception kept as its outcome (as `gather(return_exceptions=True)`
    does), so one failed request does not skip the next; together they end by `deadline` (loop time), as
    concurrent requests would within their total bound. Runs as its own task (gather), so the deadline set
    here is seen by these jobs only. If this is cancelled, the jobs not started yet are closed, never left
    un-awaited."""
    transport.SHARED_DEADLINE.set(deadline)
    outcomes: list[object] = []
    try:
        for job in jobs:
            try:
                outcomes.append(await job)
            except Exception as exc:  # noqa: BLE001 - the caller picks and raises the telling one
                outcomes.append(exc)
    finally:
        for job in jobs[len(outcomes) + 1 :]:
            job.close()
    return outcomes
