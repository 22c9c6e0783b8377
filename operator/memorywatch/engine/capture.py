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
from memorywatch.pprof import PprofError
from memorywatch.pprof.goroutines import GoroutineProfile, diff_goroutines, parse_goroutine_debug1
from memorywatch.pprof.profiles import parse_profile, profile_info, top_growth_by_function
from memorywatch.rules.guards import stack_dump_refusal
from memorywatch.rules.model import Breach, RuleKind
from memorywatch.samples import Sample
from memorywatch.scrape import ScrapeError, Scraper, TargetConfig
from memorywatch.store import CaptureKey, CaptureStore, FileRecord

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
MAX_DECOMPRESSED_BYTES = 512 * 1024 * 1024
MIN_SUMMARY_HEAP_BYTES = 1 << 20


class ProfileSource(Protocol):
    """What a capture needs from the scraper (the real `Scraper` satisfies it)."""

    async def fetch_profile(self, target: TargetConfig, name: str, *, params: Mapping[str, str]) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class Baseline:
    """What the target looked like when first seen: the reference a capture is diffed against."""

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


async def take_baseline(scraper: Scraper, target: TargetConfig, now: float) -> Baseline:
    """Fetch the reference heap profile and goroutine groups; a failure leaves that part empty."""
    heap: bytes | None = None
    groups: bytes | None = None
    try:
        heap = await scraper.fetch_profile(target, "heap", params={})
    except ScrapeError as e:
        log.info("no baseline heap profile for %s: %s", target.display_name, e)
    try:
        groups = (await scraper.fetch_text(target, "goroutine", params={"debug": "1"})).data
    except ScrapeError as e:
        log.info("no baseline goroutine groups for %s: %s", target.display_name, e)
    return Baseline(time=now, heap=heap, goroutines_text=groups)


async def _fetch(scraper: Scraper, req: CaptureRequest, profile: str) -> tuple[str, bytes, bool]:
    endpoint, params, filename = PROFILE_SOURCES[profile]
    if profile == "cpu":
        params = {"seconds": str(req.cpu_seconds)}
    if filename.endswith(".txt"):
        text = await scraper.fetch_text(req.target, endpoint, params=params)
        return filename, text.data, text.truncated
    return filename, await scraper.fetch_profile(req.target, endpoint, params=params), False


def _heap_growth(baseline: Baseline | None, heap: bytes | None) -> list[dict[str, Any]]:
    if heap is None:
        return []
    try:
        new = parse_profile(heap, MAX_DECOMPRESSED_BYTES)
        base = parse_profile(baseline.heap, MAX_DECOMPRESSED_BYTES) if baseline and baseline.heap else None
    except PprofError as e:
        log.info("cannot summarise the heap growth: %s", e)
        return []
    return [
        {
            "function": g.function,
            "file": g.file,
            "line": g.line,
            "inuseBytesDelta": int(g.delta),
            "inuseBytes": int(g.after),
            "stack": list(g.stack),
        }
        for g in top_growth_by_function(base, new, sample_type="inuse_space", limit=10)
        if g.delta > 0
    ]


def _goroutine_growth(
    baseline: Baseline | None, groups_text: bytes | None
) -> tuple[list[dict[str, Any]], int | None]:
    if groups_text is None:
        return [], None
    try:
        now = parse_goroutine_debug1(groups_text.decode("utf-8", "replace"))
        before = (
            parse_goroutine_debug1(baseline.goroutines_text.decode("utf-8", "replace"))
            if baseline and baseline.goroutines_text
            else GoroutineProfile(total=0, groups=())
        )
    except PprofError as e:
        log.info("cannot summarise the goroutine growth: %s", e)
        return [], None
    grown = [g for g in diff_goroutines(before, now) if g.delta > 0]
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
    return out, now.total


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
    restate a goroutine leak; the manifest still lists them."""
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
    gor_part = (
        f"top goroutine growth {goroutines[0]['function']} +{goroutines[0]['delta']}" if goroutines else None
    )
    ordered = [gor_part, heap_part] if first.kind is RuleKind.GOROUTINE_GROWTH else [heap_part, gor_part]
    parts += [p for p in ordered if p]
    return "; ".join(parts)


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
    notes: dict[str, dict[str, Any]] = {}
    errors: list[str] = [f"goroutine-stacks: {refusal}"] if refusal is not None else []
    for profile, result in zip([*wanted, "goroutine-groups"], results, strict=True):
        if isinstance(result, ScrapeError):
            errors.append(f"{profile}: {result}")
        elif isinstance(result, BaseException):
            raise result
        else:
            filename, data, truncated = result
            fetched[filename] = data
            if truncated:
                notes[filename] = {"truncated": True}
                errors.append(f"{profile}: truncated at the size cap ({format_bytes(len(data))})")

    heap = _heap_growth(req.baseline, fetched.get("heap.pb.gz"))
    goroutines, goroutine_total = _goroutine_growth(req.baseline, fetched.get(GOROUTINE_GROUPS_FILE))
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
            "files": [
                dict(r.as_json(), **_describe(r.name, fetched.get(r.name)), **notes.get(r.name, {}))
                for r in records
            ],
            "errors": errors,
        }
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


async def _fetch_groups(scraper: Scraper, target: TargetConfig) -> tuple[str, bytes, bool]:
    text = await scraper.fetch_text(target, "goroutine", params={"debug": "1"})
    return GOROUTINE_GROUPS_FILE, text.data, text.truncated


def _describe(name: str, data: bytes | None) -> dict[str, Any]:
    if data is None or not name.endswith(".pb.gz"):
        return {"format": "text" if name.endswith(".txt") else "pprof"}
    try:
        info = profile_info(parse_profile(data, MAX_DECOMPRESSED_BYTES))
    except PprofError:
        return {"format": "pprof"}
    return {"format": "pprof", "profile": info.as_json()}
