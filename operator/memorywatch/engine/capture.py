"""Taking a capture on a breach: fetch the profiles, summarise what grew, write files and the manifest last.

A capture never fails as a whole because one profile could not be fetched: each failure is recorded in the
manifest's `errors`, and what was fetched is kept. Only a store that cannot be written fails the capture.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from memorywatch import __version__
from memorywatch.api.units import format_bytes
from memorywatch.pprof import PprofError, jobs
from memorywatch.pprof.profiles import ProfileInfo
from memorywatch.report import REPORT_FILE
from memorywatch.report.jobs import render_report_job
from memorywatch.rules.guards import stack_dump_refusal
from memorywatch.rules.model import Breach, RuleKind
from memorywatch.samples import Sample
from memorywatch.scrape import ScrapeError, Scraper, TargetConfig
from memorywatch.store import CaptureKey, CaptureStore, FileRecord
from memorywatch.workers import WorkerError

log = logging.getLogger(__name__)

#: profile name as users write it in `capture.profiles` -> (endpoint, query, file name)
PROFILE_SOURCES: Mapping[str, tuple[str, Mapping[str, str], str]] = {
    "heap": ("heap", {}, "heap.pb.gz"),
    "goroutine": ("goroutine", {}, "goroutine.pb.gz"),
    "goroutine-stacks": ("goroutine", {"debug": "2"}, "goroutine-stacks.txt"),
    "allocs": ("allocs", {}, "allocs.pb.gz"),
    "block": ("block", {}, "block.pb.gz"),
    "mutex": ("mutex", {}, "mutex.pb.gz"),
    "threadcreate": ("threadcreate", {}, "threadcreate.pb.gz"),
    "cpu": ("profile", {}, "cpu.pb.gz"),
}
DEFAULT_PROFILES: tuple[str, ...] = ("heap", "goroutine", "goroutine-stacks")
HEAP_BASELINE_FILE = "heap-baseline.pb.gz"
GOROUTINE_BASELINE_FILE = "goroutine-baseline.txt"
GOROUTINE_GROUPS_FILE = "goroutine.txt"
MIN_SUMMARY_HEAP_BYTES = 1 << 20
# Beside a verdict of another rule (a heap leak), a goroutine group is named only when it grew by at least
# this many goroutines and by at least this share of what it held before: a server's accept or read loop
# gaining a goroutine or two between the captured profiles is noise next to a heap leak.
MIN_SUMMARY_GOROUTINES = 100
MIN_SUMMARY_GOROUTINE_SHARE = 0.1


class ProfileSource(Protocol):
    """What a capture needs from the scraper (the real `Scraper` satisfies it)."""

    async def fetch_profile(self, target: TargetConfig, name: str, *, params: Mapping[str, str]) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class Baseline:
    """What the target looked like when first seen: the reference a capture is diffed against.

    Kept raw and bounded (Limits.max_baseline_bytes each): it is parsed only when a capture diffs against
    it, in a bounded worker, so a new pod costs one small fetch, not a full profile decode."""

    time: float
    heap: bytes | None
    goroutines_text: bytes | None


@dataclasses.dataclass(frozen=True)
class CaptureRequest:
    namespace: str
    memorywatch: str
    pod: str
    target: TargetConfig
    breaches: Sequence[Breach]
    profiles: Sequence[str]
    recent: Sequence[Sample]
    baseline: Baseline | None
    cpu_seconds: int = 10


@dataclasses.dataclass(frozen=True)
class CaptureResult:
    location: str
    files: tuple[str, ...]
    summary: str
    errors: tuple[str, ...]
    manifest: Mapping[str, Any]


async def take_baseline(
    scraper: Scraper, target: TargetConfig, now: float, *, max_bytes: int | None = None
) -> Baseline:
    """Fetch the reference heap profile and goroutine groups, raw and at most `max_bytes` each (default
    Limits.max_baseline_bytes), not parsed; a failure or an oversized answer leaves that part empty."""
    limit = max_bytes if max_bytes is not None else scraper.limits.max_baseline_bytes
    heap: bytes | None = None
    groups: bytes | None = None
    try:
        heap = await scraper.fetch_profile(target, "heap", params={}, validate=False, max_bytes=limit)
    except ScrapeError as e:
        log.info("no baseline heap profile for %s: %s", target.display_name, e)
    try:
        text = await scraper.fetch_text(target, "goroutine", params={"debug": "1"}, max_bytes=limit)
        groups = None if text.truncated else text.data
    except ScrapeError as e:
        log.info("no baseline goroutine groups for %s: %s", target.display_name, e)
    return Baseline(time=now, heap=heap, goroutines_text=groups)


async def _fetch(scraper: Scraper, req: CaptureRequest, profile: str) -> tuple[str, bytes, bool, Any]:
    endpoint, params, filename = PROFILE_SOURCES[profile]
    if profile == "cpu":
        params = {"seconds": str(req.cpu_seconds)}
    if filename.endswith(".txt"):
        text = await scraper.fetch_text(req.target, endpoint, params=params)
        return filename, text.data, text.truncated, None
    data, info = await scraper.fetch_profile_info(req.target, endpoint, params=params)
    return filename, data, False, info


async def _heap_growth(
    scraper: Scraper, baseline: Baseline | None, heap: bytes | None, errors: list[str]
) -> list[dict[str, Any]]:
    """The heap diff, computed in a bounded worker (the baseline is parsed only now)."""
    if heap is None:
        return []
    base = baseline.heap if baseline else None
    try:
        result = await scraper.parse_in_worker(jobs.heap_growth, base, heap, scraper.limits.parse_budget)
    except (PprofError, WorkerError) as e:
        log.info("cannot summarise the heap growth: %s", e)
        errors.append(f"heap growth: {e}")
        return []
    if result.note:
        errors.append(result.note)
    return [
        {
            "function": g.function,
            "file": g.file,
            "line": g.line,
            "inuseBytesDelta": int(g.delta),
            "inuseBytes": int(g.after),
            "stack": list(g.stack),
        }
        for g in result.growth
        if g.delta > 0
    ]


async def _goroutine_growth(
    scraper: Scraper, baseline: Baseline | None, groups_text: bytes | None, errors: list[str]
) -> tuple[list[dict[str, Any]], int | None]:
    if groups_text is None:
        return [], None
    base = baseline.goroutines_text if baseline else None
    try:
        diff, total = await scraper.parse_in_worker(
            jobs.goroutine_growth, base, groups_text, scraper.limits.parse_budget
        )
    except (PprofError, WorkerError) as e:
        log.info("cannot summarise the goroutine growth: %s", e)
        errors.append(f"goroutine growth: {e}")
        return [], None
    grown = [g for g in diff if g.delta > 0]
    if grown:  # drop the noise next to a real leak: a couple of connection goroutines coming and going
        floor = max(1, grown[0].delta // 20)
        grown = [g for g in grown if g.delta >= floor][:10]
    out = []
    for g in grown:
        functions = [f.function for f in g.frames]
        out.append(
            {
                "function": _leading_user_function(functions),
                "before": g.before,
                "after": g.after,
                "delta": g.delta,
                "stack": [f"{f.function} {f.file.rsplit('/', 1)[-1]}:{f.line}" for f in g.frames[:8]],
                "labels": g.labels,
            }
        )
    return out, total


def _leading_user_function(functions: Sequence[str]) -> str:
    for fn in functions:
        if not fn.startswith(("runtime.", "internal/", "sync.", "time.", "net/http.", "syscall.")):
            return fn
    return functions[0] if functions else "?"


def summarise(
    breaches: Sequence[Breach], heap: Sequence[Mapping[str, Any]], goroutines: Sequence[Mapping[str, Any]]
) -> str:
    """One line for status, events and `captures list`: what fired, and what grew the most, most relevant first.

    Runtime-internal sites (e.g. `runtime.malg` allocating goroutine structs) are left out of the line: they
    restate a goroutine leak; the manifest still lists them. Beside another rule's verdict, goroutine growth
    is named only when it is significant (MIN_SUMMARY_GOROUTINES and MIN_SUMMARY_GOROUTINE_SHARE)."""
    first = breaches[0]
    parts = [first.message.rstrip(".")]
    # Sites that are runtime plumbing, or grew by less than a MiB, are noise next to the verdict.
    user_heap = [
        h
        for h in heap
        if not str(h["function"]).startswith(("runtime.", "internal/"))
        and h["inuseBytesDelta"] >= MIN_SUMMARY_HEAP_BYTES
    ]
    heap_part = (
        f"top heap growth {user_heap[0]['function']} +{format_bytes(user_heap[0]['inuseBytesDelta'])}"
        if user_heap
        else None
    )
    if first.kind is not RuleKind.GOROUTINE_GROWTH:
        goroutines = [g for g in goroutines if _significant_goroutine_growth(g)]
    gor_part = (
        f"top goroutine growth {goroutines[0]['function']} +{goroutines[0]['delta']}" if goroutines else None
    )
    ordered = [gor_part, heap_part] if first.kind is RuleKind.GOROUTINE_GROWTH else [heap_part, gor_part]
    parts += [p for p in ordered if p]
    return "; ".join(parts)


def _significant_goroutine_growth(group: Mapping[str, Any]) -> bool:
    delta = int(group.get("delta") or 0)
    before = int(group.get("before") or 0)
    return delta >= MIN_SUMMARY_GOROUTINES and delta >= MIN_SUMMARY_GOROUTINE_SHARE * before


def _series(recent: Sequence[Sample]) -> list[dict[str, Any]]:
    rows = []
    for s in recent:
        m = s.memstats
        rows.append(
            {
                "time": s.time,
                "goroutines": s.goroutines,
                "heapLiveBytes": s.heap_live_bytes,
                "heapLiveObjects": s.heap_live_objects,
                "rssBytes": s.rss_bytes,
                "rssSource": s.rss_source,
                "HeapAlloc": m.heap_alloc if m else None,
                "HeapInuse": m.heap_inuse if m else None,
                "HeapObjects": m.heap_objects if m else None,
                "HeapReleased": m.heap_released if m else None,
                "StackInuse": m.stack_inuse if m else None,
                "Sys": m.sys if m else None,
                "NextGC": m.next_gc if m else None,
                "NumGC": m.num_gc if m else None,
                "MaxRSS": m.max_rss if m else None,
            }
        )
    return rows


async def capture(scraper: Scraper, store: CaptureStore, req: CaptureRequest, now: float) -> CaptureResult:
    """Fetch, summarise and store one capture. Raises only `StoreError` (the store could not be written)."""
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    wanted = [p for p in dict.fromkeys(req.profiles) if p in PROFILE_SOURCES]
    # Do no harm: no stop-the-world stack dump of a target with too many goroutines (rules/guards.py).
    refusal = stack_dump_refusal(req.recent[-1].goroutines if req.recent else None)
    if "goroutine-stacks" not in wanted:
        refusal = None
    elif refusal is not None:
        wanted.remove("goroutine-stacks")
    tasks = [_fetch(scraper, req, p) for p in wanted]
    tasks.append(_fetch_groups(scraper, req.target))
    results = await asyncio.gather(*tasks, return_exceptions=True)

    fetched: dict[str, bytes] = {}
    infos: dict[str, ProfileInfo] = {}
    notes: dict[str, dict[str, Any]] = {}
    errors: list[str] = [f"goroutine-stacks: {refusal}"] if refusal is not None else []
    for profile, result in zip([*wanted, "goroutine-groups"], results, strict=True):
        if isinstance(result, ScrapeError):
            errors.append(f"{profile}: {result}")
        elif isinstance(result, BaseException):
            raise result
        else:
            filename, data, truncated, info = result
            fetched[filename] = data
            if info is not None:
                infos[filename] = info
            if truncated:
                notes[filename] = {"truncated": True}
                errors.append(f"{profile}: truncated at the size cap ({format_bytes(len(data))})")

    heap = await _heap_growth(scraper, req.baseline, fetched.get("heap.pb.gz"), errors)
    goroutines, goroutine_total = await _goroutine_growth(
        scraper, req.baseline, fetched.get(GOROUTINE_GROUPS_FILE), errors
    )
    summary = summarise(req.breaches, heap, goroutines)

    key = CaptureKey(req.namespace, req.memorywatch, req.pod, when, req.breaches[0].rule)
    pending = await asyncio.to_thread(store.begin, key)
    try:
        records: list[FileRecord] = []
        for name, data in fetched.items():
            records.append(await asyncio.to_thread(pending.write, name, data))
        if req.baseline and req.baseline.heap:
            records.append(await asyncio.to_thread(pending.write, HEAP_BASELINE_FILE, req.baseline.heap))
        if req.baseline and req.baseline.goroutines_text:
            records.append(
                await asyncio.to_thread(pending.write, GOROUTINE_BASELINE_FILE, req.baseline.goroutines_text)
            )
        files = [
            dict(r.as_json(), **_describe(r.name, infos.get(r.name)), **notes.get(r.name, {}))
            for r in records
        ]
        manifest = {
            "schemaVersion": 1,
            "kind": "MemoryWatchCapture",
            "tool": {"name": "memorywatch", "version": __version__},
            "namespace": req.namespace,
            "memorywatch": req.memorywatch,
            "pod": req.pod,
            "target": req.target.safe_url,
            "time": when.isoformat().replace("+00:00", "Z"),
            "rule": req.breaches[0].rule,
            "breaches": [
                {
                    "rule": b.rule,
                    "kind": str(b.kind),
                    "time": b.time,
                    "message": b.message,
                    "evidence": dict(b.evidence),
                }
                for b in req.breaches
            ],
            "summary": summary,
            "baseline": {"time": req.baseline.time} if req.baseline else None,
            "heap": {
                "topGrowth": heap,
                "comparedTo": "baseline" if req.baseline and req.baseline.heap else "nothing",
            },
            "goroutines": {"total": goroutine_total, "topGrowth": goroutines},
            "memstatsSeries": _series(req.recent),
            "files": files,
            "errors": errors,
        }
        report = await _render_report(scraper, manifest, fetched.get("heap.pb.gz"), req.baseline)
        if report is not None:
            record = await asyncio.to_thread(pending.write, REPORT_FILE, report)
            records.append(record)
            files.append(dict(record.as_json(), format="html"))
        else:
            errors.append(f"{REPORT_FILE}: not rendered (see the operator's log); the profiles are complete")
        location = await asyncio.to_thread(pending.commit, manifest)
    except BaseException:
        await asyncio.to_thread(pending.abort)
        raise
    return CaptureResult(
        location=location,
        files=(*tuple(r.name for r in records), "manifest.json"),
        summary=summary,
        errors=tuple(errors),
        manifest=manifest,
    )


async def _render_report(
    scraper: Scraper, manifest: Mapping[str, Any], heap: bytes | None, baseline: Baseline | None
) -> bytes | None:
    """The HTML report, rendered in a bounded worker (it decodes the heap profiles again), or None if that
    failed: a report is a reading aid, never worth a capture."""
    budget = scraper.limits.parse_budget
    try:
        return await scraper.parse_in_worker(
            render_report_job, dict(manifest), heap, baseline.heap if baseline else None, budget
        )
    except Exception:  # any failure rendering hostile data (a bug, a budget, a dead worker) keeps the capture
        log.exception(
            "cannot render %s for %s; the capture is kept without it", REPORT_FILE, manifest.get("pod")
        )
        return None


async def _fetch_groups(scraper: Scraper, target: TargetConfig) -> tuple[str, bytes, bool, Any]:
    text = await scraper.fetch_text(target, "goroutine", params={"debug": "1"})
    return GOROUTINE_GROUPS_FILE, text.data, text.truncated, None


def _describe(name: str, info: ProfileInfo | None) -> dict[str, Any]:
    """The manifest's format entry; a profile's summary comes from its validation, not a second parse."""
    if info is None:
        return {"format": "text" if name.endswith(".txt") else "pprof"}
    return {"format": "pprof", "profile": info.as_json()}
