"""heap?debug=1 streamed line by line: header totals, the unsampled live heap, MemStats, foreign bodies."""

from __future__ import annotations

import pathlib
import tracemalloc

import pytest

from memorywatch.pprof import (
    HeapText,
    HeapTextParser,
    MalformedText,
    parse_heap_text,
    parse_profile,
    profile_info,
    scale_heap_sample,
)

CAP = 64 << 20
DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"


def test_header_totals_and_sampling_rate(go_fixtures_dir: pathlib.Path) -> None:
    heap = parse_heap_text((go_fixtures_dir / "heap_debug1.txt").read_text())
    # `heap profile: 11: 36992 [15: 1765504] @ heap/1048576`
    assert (heap.inuse_objects, heap.inuse_bytes) == (11, 36992)
    assert (heap.alloc_objects, heap.alloc_bytes) == (15, 1765504)
    assert heap.sampling_rate_bytes == 524288  # MemProfileRate is half of heap/N
    assert heap.records == 6
    assert heap.memstats is not None and heap.memstats.sys == 21600520


def test_live_heap_estimate_matches_what_go_tool_pprof_shows(go_fixtures_dir: pathlib.Path) -> None:
    # heap_debug1.txt was taken with gc=1 right after heap_later.pb.gz and allocs.pb.gz, in the same GC
    # cycle, so unsampling the text record by record must give the proto's numbers to the byte.
    heap = parse_heap_text((go_fixtures_dir / "heap_debug1.txt").read_text())
    proto = profile_info(parse_profile((go_fixtures_dir / "heap_later.pb.gz").read_bytes(), CAP))
    allocs = profile_info(parse_profile((go_fixtures_dir / "allocs.pb.gz").read_bytes(), CAP))
    assert heap.live_bytes_estimate == proto.total("inuse_space") == 5785687
    assert heap.live_objects_estimate == proto.total("inuse_objects") == 38605
    assert heap.alloc_bytes_estimate == allocs.total("alloc_space")
    assert heap.alloc_objects_estimate == allocs.total("alloc_objects")
    # The raw sampled numbers are far below the truth; that is why the estimate exists.
    assert heap.inuse_bytes < heap.live_bytes_estimate / 100


def test_healthy_target_without_forced_gc(go_fixtures_dir: pathlib.Path) -> None:
    heap = parse_heap_text((go_fixtures_dir / "heap_debug1_healthy.txt").read_text())
    assert heap.records > 0
    assert heap.live_bytes_estimate >= heap.inuse_bytes
    assert heap.memstats is not None and heap.memstats.heap_alloc is not None


def test_streaming_gives_the_same_result_with_line_endings(go_fixtures_dir: pathlib.Path) -> None:
    text = (go_fixtures_dir / "heap_debug1.txt").read_text()
    parser = HeapTextParser()
    for line in text.splitlines(keepends=True):
        parser.feed(line)
    assert parser.result() == parse_heap_text(text)
    crlf = HeapTextParser()
    for line in text.splitlines():
        crlf.feed(line + "\r\n")
    assert crlf.result() == parser.result()


def test_scale_heap_sample_edge_cases() -> None:
    assert scale_heap_sample(0, 0, 524288) == (0, 0)
    assert scale_heap_sample(3, 300, 1) == (3, 300)  # MemProfileRate=1 sampled everything
    assert scale_heap_sample(3, 300, 0) == (3, 300)  # profiling disabled: nothing to scale by
    # One sampled 4 KiB object at the default rate (512 KiB) stands for ~128.5 of them; Go truncates.
    objects, size = scale_heap_sample(1, 4096, 524288)
    assert objects == 128
    assert size // 4096 == 128


def test_memory_stays_bounded_on_a_huge_stream() -> None:
    parser = HeapTextParser()
    parser.feed("heap profile: 1: 1 [1: 1] @ heap/1048576")
    record = "1: 4096 [1: 4096] @ 0x4877f3 0x48c247 0x68b06f 0x4911c1"
    frame = "#\t0x68b06e\tmain.retain+0x6e\t/src/main.go:15"
    tracemalloc.start()
    try:
        for _ in range(20_000):
            parser.feed(record)
            parser.feed(frame)
            parser.feed("")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parser.result().records == 20_000
    assert peak < 256 * 1024  # 20k records (~2 MB of text) folded into a few running totals


@pytest.mark.parametrize(
    "body",
    [
        "<!DOCTYPE html>\n<html><body>Welcome to nginx!</body></html>\n",
        '{"memstats": {"Alloc": 1}}',
        "goroutine profile: total 4\n",
        "heap profile: 1: 2 [3: 4] @ heap/oops\n",
    ],
)
def test_foreign_bodies_are_refused(body: str) -> None:
    with pytest.raises(MalformedText, match="expected a Go heap profile"):
        parse_heap_text(body)


def test_empty_body_is_refused() -> None:
    with pytest.raises(MalformedText, match="no heap profile header"):
        parse_heap_text("")


def test_garbage_after_a_valid_header_is_refused() -> None:
    parser = HeapTextParser()
    parser.feed("heap profile: 1: 2 [3: 4] @ heap/1048576")
    with pytest.raises(MalformedText, match="heap profile record"):
        parser.feed("<html>")


def test_a_record_line_cut_mid_transfer_is_refused(go_fixtures_dir: pathlib.Path) -> None:
    text = (go_fixtures_dir / "heap_debug1.txt").read_text()
    cut = text[: text.index("[", 60) + 3]  # inside the second record's `[a: b]`
    with pytest.raises(MalformedText):
        parse_heap_text(cut)


def test_profile_without_memstats_block() -> None:
    heap = parse_heap_text("heap profile: 0: 0 [0: 0] @ heap/1048576\n")
    assert heap.memstats is None
    assert heap.live_bytes_estimate == 0


# -- feed_lines: raw lines from the wire, records totalled per batch; the same outcome as line by line ------


def line_by_line(lines: list[bytes]) -> object:
    """What the scraper did before feed_lines: drop frames, decode, feed each line."""
    parser = HeapTextParser()
    try:
        for raw in lines:
            if not raw.startswith(b"#\t"):
                parser.feed(raw.rstrip(b"\r").decode("utf-8", "replace"))
        return parser.result()
    except MalformedText as e:
        return ("MalformedText", str(e))


def batched(lines: list[bytes], size: int) -> object:
    parser = HeapTextParser()
    try:
        for at in range(0, len(lines), size):
            parser.feed_lines(lines[at : at + size])
        return parser.result()
    except MalformedText as e:
        return ("MalformedText", str(e))


def raw_lines(text: bytes) -> list[bytes]:
    return text.split(b"\n")


BATCH_SIZES = (1, 2, 3, 7, 64, 1 << 20)


@pytest.mark.parametrize(
    "name", ["heap_debug1.txt", "heap_debug1_healthy.txt", "heap_debug1_cgo.txt", "heap_debug1_sim.txt"]
)
def test_feed_lines_equals_line_by_line_on_real_profiles(name: str, go_fixtures_dir: pathlib.Path) -> None:
    path = go_fixtures_dir / name if name != "heap_debug1_sim.txt" else DATA_DIR / name
    lines = raw_lines(path.read_bytes())
    expected = line_by_line(lines)
    assert isinstance(expected, HeapText) and expected.records > 0 and expected.memstats is not None
    for size in BATCH_SIZES:
        assert batched(lines, size) == expected, size
    crlf = [line + b"\r" for line in lines]  # CRLF bodies take the careful path and agree too
    assert batched(crlf, 64) == line_by_line(crlf) == expected


def test_feed_lines_matches_go_tool_pprof(go_fixtures_dir: pathlib.Path) -> None:
    lines = raw_lines((go_fixtures_dir / "heap_debug1.txt").read_bytes())
    heap = batched(lines, 1 << 20)
    assert isinstance(heap, HeapText)
    assert (heap.live_bytes_estimate, heap.live_objects_estimate) == (5785687, 38605)


HEADER = b"heap profile: 3: 12288 [9: 36864] @ heap/1048576"
RECORD = b"1: 4096 [3: 12288] @ 0x4877f3 0x48c247 0x68b06f"
FRAME = b"#\t0x68b06e\tmain.retain+0x6e\t/src/main.go:15"
TAIL = [b"", b"# runtime.MemStats", b"# Sys = 21600520", b"# HeapReleased = 7323648", b"# NumGC = 5"]


@pytest.mark.parametrize(
    "odd",
    [
        b"",  # an empty line among the records
        b"   ",  # whitespace only: ignored by feed
        b" " + RECORD,  # a record with leading space: feed strips it
        RECORD + b"  ",
        RECORD + b"\r",
        "١: 4096 [3: 12288] @ 0x1".encode(),  # Arabic-Indic digit: \d and int() accept it in str
        b"\xc2\xa0" + RECORD,  # a no-break space, whitespace to str.strip
        b"# a comment that is not a frame",
        b"#" + b"x" * 20000,  # an overlong comment line: refused by feed
        b"1: 4096 [3: 12288] @" + b" 0x1" * 5000,  # an overlong record line: refused by feed
        b"#\t" + b"y" * 20000,  # an overlong frame: never looked at
        b"# runtime.MemStatsX",  # looks like the marker, is a comment
        b"1: 4096 [3: 12288]",  # no @: refused
        b"1: 4096 [3: 122",  # cut mid-transfer: refused
        b"1: 4096 [3: 12288] @ 0xZZ",  # bad PC: refused
        b"<html>",
        b"\xff\xfe garbage",
        b"1: 4096 [3: 12288] @ 0x4877f3\x00",
    ],
)
def test_feed_lines_handles_odd_lines_exactly_as_feed(odd: bytes) -> None:
    for where in range(4):
        records = [RECORD, FRAME, FRAME, b"", RECORD, FRAME, b"", RECORD, FRAME]
        records.insert(where * 3, odd)
        lines = [HEADER, *records, *TAIL]
        expected = line_by_line(lines)
        for size in BATCH_SIZES:
            assert batched(lines, size) == expected, (where, size)


def test_feed_lines_before_the_header_and_inside_memstats() -> None:
    lines = [b"", b"  ", HEADER, RECORD, FRAME, b"", *TAIL, b"#\tnot a frame here", b"# Alloc = 5", RECORD]
    expected = line_by_line(lines)
    assert isinstance(expected, HeapText) and expected.records == 1
    for size in BATCH_SIZES:
        assert batched(lines, size) == expected
    foreign = [b"<html>", HEADER]
    assert batched(foreign, 2) == line_by_line(foreign)
    assert isinstance(line_by_line(foreign), tuple)


def test_feed_lines_counts_lines_as_feed_does_in_errors() -> None:
    lines = [HEADER, RECORD, FRAME, FRAME, b"", RECORD, b"garbage", *TAIL]
    expected = line_by_line(lines)
    assert expected == ("MalformedText", expected[1]) and "line 5" in str(expected)  # type: ignore[index]
    assert batched(lines, 1 << 20) == expected
    # The error is raised for a batch after records were already totalled by earlier batches too.
    assert batched(lines, 3) == expected
