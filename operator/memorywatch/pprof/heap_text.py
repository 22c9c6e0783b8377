"""Streaming parser for `/debug/pprof/heap?debug=1`: header totals, the unsampled live-heap estimate, MemStats."""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import zlib
from collections.abc import Sequence

from memorywatch.pprof.errors import MalformedText
from memorywatch.pprof.memstats import MemStats, parse_memstats_lines

# writeHeapInternal: "heap profile: %d: %d [%d: %d] @ heap/%d" with the in-use then the allocated
# objects and bytes, and 2*MemProfileRate as N.
_HEADER = re.compile(r"heap profile: (\d+): (\d+) \[(\d+): (\d+)\] @ heap/(\d+)")
_RECORD = re.compile(r"(\d+): (\d+) \[(\d+): (\d+)\] @(?: 0x[0-9a-f]+)*")
_MEMSTATS_MARKER = "# runtime.MemStats"
# The MemStats block is ~30 lines; anything past this is not Go's and must not grow our memory.
_MAX_MEMSTATS_LINES = 64
# A PauseNs line holds 256 numbers of up to 20 digits; records hold up to 128 PCs.
_MAX_LINE_CHARS = 16384
_EXPECTED = "a Go heap profile (`heap profile: N: N [N: N] @ heap/N`)"
# Go writes the records sorted by in-use bytes in ascending order (slices.SortFunc with cmp.Compare in
# writeHeapInternal): the last ones are the biggest sites.
TOP_SITES = 32

# The fast path of `feed_lines`: between the header and the MemStats block, a batch whose lines are all
# frames (`#\t…`, most of the body, never checked), empty, or whole records of at most _MAX_LINE_CHARS is
# totalled from one regular-expression scan and a few counts. Any other line in the batch (whitespace around
# a record, a `\r`, non-ASCII digits, a `#` comment, an overlong line, garbage) sends the batch line by line
# through `feed`, which accepts or refuses it exactly as before.
_RAW_FRAME = b"#\t"
_RAW_MARKER = b"# runtime.MemStats"
# A whole record line, with the newline before it and after it (the candidates are joined by newlines).
_RAW_RECORD = re.compile(rb"\n([0-9]+): ([0-9]+) \[([0-9]+): ([0-9]+)\] @((?: 0x[0-9a-f]+)*)(?=\n)")


def scale_heap_sample(count: int, size: int, rate: int) -> tuple[int, int]:
    """Undo heap sampling for one record exactly as runtime/pprof's scaleHeapSample does.

    A record of `count` objects totalling `size` bytes, sampled on average once every `rate` bytes
    (MemProfileRate), stands for count/(1-exp(-avgSize/rate)) objects: small objects are rarely sampled.
    """
    if count == 0 or size == 0:
        return 0, 0
    if rate <= 1:
        # rate 1 sampled every allocation; rate 0 disabled profiling, so there is nothing to scale by.
        return count, size
    avg_size = size / count
    scale = 1 / (1 - math.exp(-avg_size / rate))
    return int(count * scale), int(size * scale)


@dataclasses.dataclass(frozen=True)
class HeapText:
    """What one heap?debug=1 response says.

    `inuse_*`/`alloc_*` are the raw sampled totals of the header. `live_bytes_estimate` and
    `live_objects_estimate` are the in-use totals unsampled record by record, the same numbers
    `go tool pprof` shows for inuse_space/inuse_objects: the live heap as of the last completed GC.
    `sampling_rate_bytes` is MemProfileRate, half the N of `@ heap/N`. `top_sites` are the largest
    records (per stack), for retention per allocation site.
    """

    inuse_objects: int
    inuse_bytes: int
    alloc_objects: int
    alloc_bytes: int
    sampling_rate_bytes: int
    records: int
    live_bytes_estimate: int
    live_objects_estimate: int
    alloc_bytes_estimate: int
    alloc_objects_estimate: int
    memstats: MemStats | None
    # The TOP_SITES largest allocation sites: (crc32 of the record's PC list, in-use bytes, allocated
    # bytes), both unsampled. Stable within one process; a leaking site keeps what it allocates.
    top_sites: tuple[tuple[int, int, int], ...] = ()


class HeapTextParser:
    """Feed heap?debug=1 one line at a time, then call `result()`.

    Memory stays bounded whatever the response size: records are folded into running totals as they
    arrive and frame lines are skipped, so a scraper can stream a large profile through it.
    """

    def __init__(self, *, memstats_arrays: bool = True) -> None:
        """`memstats_arrays=False`: the result's MemStats has no PauseNs/PauseEnd (see parse_memstats_lines)."""
        self._memstats_arrays = memstats_arrays
        self._header: tuple[int, int, int, int, int] | None = None
        self._records = 0
        self._live = [0, 0, 0, 0]  # inuse objects, inuse bytes, alloc objects, alloc bytes (scaled)
        self._sites: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=TOP_SITES)
        self._in_memstats = False
        self._memstats_lines: list[str] = []
        self._lines = 0

    def feed(self, line: str) -> None:
        """Consume one line (with or without its line ending). Raises MalformedText on foreign content."""
        self._lines += 1
        line = line.rstrip("\r\n")
        if len(line) > _MAX_LINE_CHARS:
            raise MalformedText(_EXPECTED, line, f"line {self._lines} is {len(line)} characters long")
        if self._header is None:
            self._feed_header(line)
        elif self._in_memstats:
            if len(self._memstats_lines) < _MAX_MEMSTATS_LINES:
                self._memstats_lines.append(line)
        elif line.startswith("#"):
            if line.strip() == _MEMSTATS_MARKER:
                self._in_memstats = True
            # Otherwise a frame line (`#\t0x…\tfunc+0x…\tfile:line`): the totals do not need it.
        elif line.strip():
            self._feed_record(line)

    def feed_lines(self, lines: Sequence[bytes]) -> None:
        """Consume raw lines as read from the wire (bytes, without `\\n`), dropping frame lines (`#\\t…`).

        The result, and any error, is exactly that of feeding each non-frame line through `feed` (decoded
        as UTF-8 with bad bytes replaced, a trailing `\\r` removed), but the records between the header
        and the MemStats block are recognised and totalled by one regular expression per batch instead of
        Python work per line.
        """
        start, count = 0, len(lines)
        while start < count:
            if self._header is None or self._in_memstats:
                self._feed_raw(lines[start])
                start += 1
                continue
            rest = lines[start:]
            others = [line for line in rest if not line.startswith(_RAW_FRAME)]
            # The records run up to the MemStats marker, or to the end of this batch.
            marker = next((line for line in others if line.startswith(_RAW_MARKER)), None)
            size = len(rest) if marker is None else rest.index(marker)
            if marker is not None:
                others = others[: others.index(marker)]
            if size and not self._fast_region(others, size):
                for raw in rest[:size]:
                    self._feed_raw(raw)
            start += size
            if start < count:  # the MemStats marker (or a line that only looks like it): line by line
                self._feed_raw(lines[start])
                start += 1

    def _fast_region(self, others: list[bytes], size: int) -> bool:
        """Total a region of `size` lines whose non-frame lines are `others`, if each of those is empty or a
        well-formed record of at most _MAX_LINE_CHARS; return False, consuming nothing, otherwise."""
        candidates = [line for line in others if line]  # the records, if all is well
        if candidates:
            if max(map(len, candidates)) > _MAX_LINE_CHARS:
                return False
            records = _RAW_RECORD.findall(b"\n" + b"\n".join(candidates) + b"\n")
            if len(records) != len(candidates):  # a `#` comment, whitespace, garbage: leave it to `feed`
                return False
            self._add_records(records)
        self._lines += len(others)
        return True

    def _feed_raw(self, raw: bytes) -> None:
        if not raw.startswith(_RAW_FRAME):
            self.feed(raw.rstrip(b"\r").decode("utf-8", "replace"))

    def _add_records(self, records: list[tuple[bytes, bytes, bytes, bytes, bytes]]) -> None:
        """scale_heap_sample for each record's in-use and allocated pair, inlined: the same float operations
        in the same order, so the totals are identical to the byte; the last TOP_SITES records of the batch
        (Go prints the biggest last) also become sites, keyed as `_feed_record` keys them."""
        assert self._header is not None
        rate = self._header[4] // 2
        exp = math.exp
        live_objects = live_bytes = all_objects = all_bytes = 0
        sites_from = len(records) - TOP_SITES
        for i, (raw_inuse_objects, raw_inuse_bytes, raw_alloc_objects, raw_alloc_bytes, pcs) in enumerate(
            records
        ):
            lo = lb = ao = ab = 0
            count, size = int(raw_inuse_objects), int(raw_inuse_bytes)
            if count and size:
                if rate <= 1:
                    lo, lb = count, size
                else:
                    scale = 1 / (1 - exp(-(size / count) / rate))
                    lo, lb = int(count * scale), int(size * scale)
            count, size = int(raw_alloc_objects), int(raw_alloc_bytes)
            if count and size:
                if rate <= 1:
                    ao, ab = count, size
                else:
                    scale = 1 / (1 - exp(-(size / count) / rate))
                    ao, ab = int(count * scale), int(size * scale)
            live_objects += lo
            live_bytes += lb
            all_objects += ao
            all_bytes += ab
            if i >= sites_from:
                self._sites.append((zlib.crc32(pcs), lb, ab))
        live = self._live
        live[0] += live_objects
        live[1] += live_bytes
        live[2] += all_objects
        live[3] += all_bytes
        self._records += len(records)

    def _feed_header(self, line: str) -> None:
        if not line.strip():
            return
        match = _HEADER.fullmatch(line.strip())
        if match is None:
            raise MalformedText(_EXPECTED, line)
        a, b, c, d, n = (int(g) for g in match.groups())
        self._header = (a, b, c, d, n)

    def _feed_record(self, line: str) -> None:
        match = _RECORD.fullmatch(line.strip())
        if match is None:
            raise MalformedText("a heap profile record (`N: N [N: N] @ 0x…`)", line, f"line {self._lines}")
        assert self._header is not None
        inuse_objects, inuse_bytes, alloc_objects, alloc_bytes = (int(g) for g in match.groups())
        rate = self._header[4] // 2
        live_objects, live_bytes = scale_heap_sample(inuse_objects, inuse_bytes, rate)
        all_objects, all_bytes = scale_heap_sample(alloc_objects, alloc_bytes, rate)
        self._live[0] += live_objects
        self._live[1] += live_bytes
        self._live[2] += all_objects
        self._live[3] += all_bytes
        self._records += 1
        pcs = line.strip().partition("@")[2]
        self._sites.append((zlib.crc32(pcs.encode()), live_bytes, all_bytes))

    def result(self) -> HeapText:
        """The parsed profile. Raises MalformedText if no heap profile header was seen."""
        if self._header is None:
            raise MalformedText(_EXPECTED, "", "the body had no heap profile header")
        inuse_objects, inuse_bytes, alloc_objects, alloc_bytes, n = self._header
        memstats = (
            parse_memstats_lines(self._memstats_lines, arrays=self._memstats_arrays)
            if self._in_memstats
            else None
        )
        return HeapText(
            inuse_objects=inuse_objects,
            inuse_bytes=inuse_bytes,
            alloc_objects=alloc_objects,
            alloc_bytes=alloc_bytes,
            sampling_rate_bytes=n // 2,
            records=self._records,
            live_objects_estimate=self._live[0],
            live_bytes_estimate=self._live[1],
            alloc_objects_estimate=self._live[2],
            alloc_bytes_estimate=self._live[3],
            memstats=memstats,
            top_sites=tuple(reversed(self._sites)),
        )


def parse_heap_text(text: str) -> HeapText:
    """Parse a whole heap?debug=1 body held in memory (tests, captures); scrapers stream with HeapTextParser."""
    parser = HeapTextParser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.result()
