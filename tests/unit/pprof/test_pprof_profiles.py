"""Protobuf profiles: decoding the real captures, their summary, growth between two, and hostile bytes."""

from __future__ import annotations

import gzip
import pathlib
import time
import tracemalloc
import zlib

import pytest

from memorywatch.pprof import (
    ProfileCorrupt,
    ProfileTooLarge,
    ProfileTruncated,
    SampleTypeMissing,
    ValueType,
    gunzip_capped,
    parse_profile,
    profile_info,
    profile_pb2,
    top_growth,
    top_growth_by_function,
)

CAP = 64 << 20
BEHAVIOURS = "/work/main/tests/gotargets/behaviours.go"


def load(fixtures: pathlib.Path, name: str) -> bytes:
    return (fixtures / name).read_bytes()


def test_heap_profile_summary(go_fixtures_dir: pathlib.Path) -> None:
    info = profile_info(parse_profile(load(go_fixtures_dir, "heap_later.pb.gz"), CAP))
    assert info.period_type == ValueType("space", "bytes")
    assert info.period == 524288  # MemProfileRate
    assert [t.type for t in info.sample_types] == [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ]
    assert [t.unit for t in info.sample_types] == ["count", "bytes", "count", "bytes"]
    assert info.default_sample_type is None  # heap leaves it unset: the last type, inuse_space
    assert info.sample_count == 5
    assert info.total("inuse_space") == 5785687
    assert info.time_nanos == 1795628958190160721
    manifest = info.as_json()
    assert manifest["totals"]["inuse_objects"] == 38605
    assert manifest["periodType"] == {"type": "space", "unit": "bytes"}


def test_allocs_and_goroutine_profiles(go_fixtures_dir: pathlib.Path) -> None:
    allocs = profile_info(parse_profile(load(go_fixtures_dir, "allocs.pb.gz"), CAP))
    assert allocs.default_sample_type == "alloc_space"
    goroutines = profile_info(parse_profile(load(go_fixtures_dir, "goroutine.pb.gz"), CAP))
    assert goroutines.period_type == ValueType("goroutine", "count")
    assert goroutines.sample_types == (ValueType("goroutine", "count"),)
    # Taken right after goroutine_debug1_t2.txt, which says `total 170`.
    assert goroutines.total("goroutine") == 170


def test_the_proto_keeps_runtime_frames_and_field_numbers_line_up(go_fixtures_dir: pathlib.Path) -> None:
    # If a field number in profile.proto were wrong, names, files or lines would come out empty or swapped.
    profile = parse_profile(load(go_fixtures_dir, "goroutine.pb.gz"), CAP)
    leak = max(profile.samples, key=lambda s: s.values[0])
    assert leak.values == (163,)
    functions = [f.function for f in leak.stack]
    assert functions[0] == "runtime.gopark"  # hidden in debug=1 text, present in the proto
    assert "main.blockForever" in functions
    frame = leak.stack[functions.index("main.blockForever")]
    assert (frame.file, frame.line) == (BEHAVIOURS, 103)


def test_top_growth_names_the_heap_leak(go_fixtures_dir: pathlib.Path) -> None:
    base = parse_profile(load(go_fixtures_dir, "heap_base.pb.gz"), CAP)
    later = parse_profile(load(go_fixtures_dir, "heap_later.pb.gz"), CAP)
    growth = top_growth(base, later)
    top = growth[0]
    assert (top.function, top.file, top.line) == ("main.retainRecords", BEHAVIOURS, 129)
    # The same figure `go tool pprof -raw -sample_index=inuse_space -base heap_base.pb.gz heap_later.pb.gz` prints.
    assert top.delta == 2631693
    assert top.after == 4737047
    assert top.stack == (f"main.retainRecords {BEHAVIOURS}:129", f"main.runLeaker {BEHAVIOURS}:85")
    assert all(g.delta > 0 for g in growth)


def test_growth_by_function_and_in_objects(go_fixtures_dir: pathlib.Path) -> None:
    base = parse_profile(load(go_fixtures_dir, "heap_base.pb.gz"), CAP)
    later = parse_profile(load(go_fixtures_dir, "heap_later.pb.gz"), CAP)
    by_function = top_growth_by_function(base, later, limit=3)
    assert by_function[0].function == "main.retainRecords"
    assert by_function[0].delta == 2631693
    objects = top_growth(base, later, sample_type="inuse_objects", limit=1)
    assert objects[0].function == "main.retainRecords" and objects[0].delta == 642


def test_growth_since_nothing_ranks_by_value(go_fixtures_dir: pathlib.Path) -> None:
    goroutines = parse_profile(load(go_fixtures_dir, "goroutine.pb.gz"), CAP)
    growth = top_growth(None, goroutines, sample_type="goroutine", limit=2)
    # The innermost non-runtime frame: gopark/chanrecv are skipped.
    assert (growth[0].function, growth[0].before, growth[0].after) == ("main.blockForever", 0, 163)
    assert len(growth) == 2


def test_several_lines_of_one_function_rank_as_one() -> None:
    # Two stacks in one function, each smaller than a third site elsewhere, together larger than it.
    def profile(values: list[tuple[str, int, int]]) -> bytes:
        message = profile_pb2.Profile()
        message.string_table.extend(["", "inuse_space", "bytes", "main.leak", "main.other", "/src/main.go"])
        message.sample_type.add(type=1, unit=2)
        message.function.add(id=1, name=3, filename=5)
        message.function.add(id=2, name=4, filename=5)
        for index, (name, line, value) in enumerate(values, start=1):
            location = message.location.add(id=index)
            location.line.add(function_id=1 if name == "main.leak" else 2, line=line)
            message.sample.add(location_id=[index], value=[value])
        return gzip.compress(message.SerializeToString())

    new = parse_profile(
        profile([("main.leak", 10, 600), ("main.leak", 20, 500), ("main.other", 5, 1000)]), CAP
    )
    assert top_growth(None, new)[0].function == "main.other"
    spread = top_growth_by_function(None, new)[0]
    assert (spread.function, spread.after, spread.line) == ("main.leak", 1100, 10)


def test_missing_sample_type(go_fixtures_dir: pathlib.Path) -> None:
    goroutines = parse_profile(load(go_fixtures_dir, "goroutine.pb.gz"), CAP)
    with pytest.raises(SampleTypeMissing, match="expected a profile with sample type 'inuse_space'"):
        top_growth(None, goroutines)


def test_raw_and_multi_member_gzip_are_accepted(go_fixtures_dir: pathlib.Path) -> None:
    data = load(go_fixtures_dir, "heap_later.pb.gz")
    raw = gzip.decompress(data)
    assert gunzip_capped(raw, CAP) == raw
    assert profile_info(parse_profile(raw, CAP)).total("inuse_space") == 5785687
    half = len(raw) // 2
    two_members = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    assert gunzip_capped(two_members, CAP) == raw


def test_truncated_gzip(go_fixtures_dir: pathlib.Path) -> None:
    data = load(go_fixtures_dir, "heap_later.pb.gz")
    for cut in (12, len(data) // 2, len(data) - 4):
        with pytest.raises(ProfileTruncated, match="expected a complete gzip stream"):
            parse_profile(data[:cut], CAP)


def test_corrupt_gzip_and_corrupt_proto(go_fixtures_dir: pathlib.Path) -> None:
    data = bytearray(load(go_fixtures_dir, "heap_later.pb.gz"))
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    with pytest.raises(ProfileCorrupt):
        parse_profile(bytes(data), CAP)
    with pytest.raises(ProfileCorrupt, match="expected a pprof protobuf"):
        parse_profile(gzip.compress(b"\xff" * 64), CAP)
    with pytest.raises(ProfileCorrupt, match="trailing bytes"):
        gunzip_capped(load(go_fixtures_dir, "heap_later.pb.gz") + b"junk", CAP)


def test_a_proto_with_dangling_references_is_corrupt() -> None:
    message = profile_pb2.Profile()
    message.string_table.extend(["", "inuse_space", "bytes"])
    message.sample_type.add(type=1, unit=2)
    message.sample.add(location_id=[7], value=[1])
    with pytest.raises(ProfileCorrupt, match="location id"):
        parse_profile(message.SerializeToString(), CAP)
    message.sample[0].ClearField("location_id")
    message.sample[0].value.append(2)
    with pytest.raises(ProfileCorrupt, match="values per sample"):
        parse_profile(message.SerializeToString(), CAP)
    message.Clear()
    message.string_table.append("")
    with pytest.raises(ProfileCorrupt, match="without sample types"):
        parse_profile(message.SerializeToString(), CAP)
    with pytest.raises(ProfileCorrupt, match="empty body"):
        parse_profile(b"", CAP)


def gzip_bomb(megabytes: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join([*(compressor.compress(block) for _ in range(megabytes)), compressor.flush()])


def test_a_gzip_bomb_stops_at_the_cap_quickly_with_bounded_memory() -> None:
    bomb = gzip_bomb(200)
    assert len(bomb) < 400_000  # 200 MB of zeros
    cap = 8 << 20
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ProfileTooLarge, match=f"expected at most {cap} bytes"):
            parse_profile(bomb, cap)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 3 * cap  # the cap plus the compressed input, never the 200 MB


def test_raw_input_over_the_cap_is_refused() -> None:
    with pytest.raises(ProfileTooLarge):
        gunzip_capped(b"\x0a" * 1001, 1000)
