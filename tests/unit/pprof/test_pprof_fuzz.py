"""Random, truncated and mutated input to every parser: only this package's typed errors may come out."""

from __future__ import annotations

import gzip
import pathlib
import random
from collections.abc import Callable

import pytest

from memorywatch.pprof import (
    PprofError,
    parse_expvar,
    parse_goroutine_debug1,
    parse_goroutine_debug2,
    parse_heap_text,
    parse_index,
    parse_memstats_lines,
    parse_profile,
    parse_prometheus_text,
    profile_info,
    top_growth,
)

CAP = 1 << 20


def _profile(data: bytes) -> None:
    profile = parse_profile(data, CAP)
    info = profile_info(profile)
    if info.sample_types:
        top_growth(None, profile, sample_type=info.sample_types[-1].type)


PARSERS: dict[str, Callable[[bytes], object]] = {
    "heap_text": lambda b: parse_heap_text(b.decode("utf-8", "replace")),
    "goroutines": lambda b: parse_goroutine_debug1(b.decode("utf-8", "replace")),
    "goroutine_stacks": lambda b: parse_goroutine_debug2(b.decode("utf-8", "replace")),
    "index": lambda b: parse_index(b.decode("utf-8", "replace")),
    "expvar": parse_expvar,
    "metrics": lambda b: parse_prometheus_text(b.decode("utf-8", "replace")),
    "memstats": lambda b: parse_memstats_lines(b.decode("utf-8", "replace").splitlines()),
    "profile": _profile,
}

FIXTURES = {
    "heap_text": "heap_debug1.txt",
    "goroutines": "goroutine_debug1_t0.txt",
    "goroutine_stacks": "goroutine_debug2.txt",
    "index": "index.html",
    "expvar": "vars.json",
    "metrics": "metrics.txt",
    "memstats": "heap_debug1_healthy.txt",
    "profile": "heap_later.pb.gz",
}


def inputs(seed_input: bytes, rng: random.Random) -> list[bytes]:
    found = [b"", b"\x00", b"\x1f\x8b", gzip.compress(b""), gzip.compress(b"\x00" * 10)]
    found += [rng.randbytes(rng.randrange(1, 512)) for _ in range(150)]
    found += [seed_input[: rng.randrange(len(seed_input))] for _ in range(150)]
    for _ in range(150):
        mutated = bytearray(seed_input)
        for _ in range(rng.randrange(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        found.append(bytes(mutated))
    # Mutations inside the decompressed proto reach the protobuf decoder and the table checks.
    if seed_input.startswith(b"\x1f\x8b"):
        raw = gzip.decompress(seed_input)
        for _ in range(150):
            mutated = bytearray(raw)
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            found.append(gzip.compress(bytes(mutated), compresslevel=1))
    return found


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_only_typed_errors_escape(name: str, go_fixtures_dir: pathlib.Path) -> None:
    parse = PARSERS[name]
    rng = random.Random(f"memorywatch-{name}")
    seed_input = (go_fixtures_dir / FIXTURES[name]).read_bytes()
    outcomes = {"ok": 0, "typed": 0}
    for data in inputs(seed_input, rng):
        try:
            parse(data)
        except PprofError as e:
            outcomes["typed"] += 1
            assert str(e) and "\n" not in str(e)
        else:
            outcomes["ok"] += 1
    # The MemStats reader never fails (odd fields become None); every other parser must refuse some of these.
    assert outcomes["typed"] > 0 or name == "memstats"


def test_error_messages_are_short_and_sanitized() -> None:
    with pytest.raises(PprofError) as caught:
        parse_heap_text("\x1b[31mred\x1b[0m\n" + "x" * 500)
    message = str(caught.value)
    assert "\x1b" not in message
    assert len(message) < 200
