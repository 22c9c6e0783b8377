"""pprof protobuf profiles: capped gunzip, decoding with resolved strings, a summary, and growth between two."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

from google.protobuf.message import DecodeError

from memorywatch.pprof import profile_pb2
from memorywatch.pprof.errors import (
    BudgetExceeded,
    ProfileCorrupt,
    ProfileTooLarge,
    ProfileTruncated,
    SampleTypeMissing,
)
from memorywatch.pprof.goroutines import Frame, is_runtime_function

_GZIP_MAGIC = b"\x1f\x8b"
# How many frames of context a growth site carries into summaries.
STACK_FRAMES = 6


@dataclasses.dataclass(frozen=True)
class ValueType:
    type: str
    unit: str


@dataclasses.dataclass(frozen=True)
class ProfileSample:
    """One sample: its values (one per sample type) and its stack, leaf first with inlined frames expanded."""

    values: tuple[int, ...]
    stack: tuple[Frame, ...]


@dataclasses.dataclass(frozen=True)
class Profile:
    """A decoded profile with every string-table index resolved."""

    sample_types: tuple[ValueType, ...]
    period_type: ValueType | None
    period: int
    time_nanos: int
    duration_nanos: int
    default_sample_type: str | None
    samples: tuple[ProfileSample, ...]

    def sample_index(self, sample_type: str) -> int:
        """Position of `sample_type` in each sample's values. Raises SampleTypeMissing."""
        for index, value_type in enumerate(self.sample_types):
            if value_type.type == sample_type:
                return index
        present = ", ".join(t.type for t in self.sample_types)
        raise SampleTypeMissing(f"expected a profile with sample type {sample_type!r}, saw [{present}]")


@dataclasses.dataclass(frozen=True)
class ProfileInfo:
    """What a capture holds, for validation and for its manifest. Totals are in each sample type's unit."""

    period_type: ValueType | None
    period: int
    sample_types: tuple[ValueType, ...]
    default_sample_type: str | None
    sample_count: int
    totals: tuple[tuple[str, int], ...]
    time_nanos: int
    duration_nanos: int

    def total(self, sample_type: str) -> int | None:
        return dict(self.totals).get(sample_type)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready description (camelCase keys, like the rest of the manifest)."""
        return {
            "periodType": None if self.period_type is None else dataclasses.asdict(self.period_type),
            "period": self.period,
            "sampleTypes": [dataclasses.asdict(t) for t in self.sample_types],
            "defaultSampleType": self.default_sample_type,
            "sampleCount": self.sample_count,
            "totals": dict(self.totals),
            "timeNanos": self.time_nanos,
            "durationNanos": self.duration_nanos,
        }


@dataclasses.dataclass(frozen=True)
class SiteGrowth:
    """How much one allocation site (or function) grew, in the sample type's unit.

    `function`/`file`/`line` name the innermost non-runtime frame; for by-function growth, `line` is the line
    that contributed most. `stack` is a few frames from the site outwards, formatted `function file:line`.
    """

    function: str
    file: str
    line: int
    before: int
    after: int
    stack: tuple[str, ...]

    @property
    def delta(self) -> int:
        return self.after - self.before


def gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Decompress a gzipped profile, refusing to produce more than `max_bytes`.

    Output is produced in bounded steps, so a gzip bomb costs at most `max_bytes` of memory before it is
    refused with ProfileTooLarge. Data that is not gzip is returned as is (a raw proto is valid pprof input).
    Raises ProfileTruncated when the stream ends early and ProfileCorrupt when it is not valid gzip.
    """
    if not data.startswith(_GZIP_MAGIC):
        if len(data) > max_bytes:
            raise ProfileTooLarge(f"expected at most {max_bytes} bytes of profile, saw {len(data)} bytes")
        return data
    chunks: list[bytes] = []
    produced = 0
    pending = data
    # A gzip file may hold several members back to back; Go's reader accepts that, so do we.
    while pending:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        while True:
            try:
                chunk = decompressor.decompress(pending, max_bytes - produced + 1)
            except zlib.error as e:
                raise ProfileCorrupt(f"expected a gzip stream, saw invalid data ({e})") from None
            produced += len(chunk)
            if produced > max_bytes:
                raise ProfileTooLarge(f"expected at most {max_bytes} bytes once decompressed, saw more")
            chunks.append(chunk)
            if decompressor.eof:
                pending = decompressor.unused_data
                break
            pending = decompressor.unconsumed_tail
            if not pending:
                raise ProfileTruncated(
                    f"expected a complete gzip stream, saw it end after {len(data)} bytes "
                    f"({produced} decompressed)"
                )
        if pending and not pending.startswith(_GZIP_MAGIC):
            raise ProfileCorrupt(f"expected the end of the gzip stream, saw {len(pending)} trailing bytes")
    return b"".join(chunks)


def parse_profile(data: bytes, max_decompressed_bytes: int, *, max_samples: int | None = None) -> Profile:
    """Decode a (gzipped or raw) pprof profile. Raises ProfileTruncated, ProfileCorrupt or ProfileTooLarge,
    and BudgetExceeded when it has more than `max_samples` samples (or locations): resolving each costs
    a few hundred bytes of Python objects, so a profile with millions is refused before that happens."""
    raw = gunzip_capped(data, max_decompressed_bytes)
    if not raw:
        raise ProfileCorrupt("expected a pprof protobuf, saw an empty body")
    if max_samples is not None:
        # Counted on the wire, before protobuf builds a message per sample (that alone is ~100 bytes each).
        for what, field in (("samples", _SAMPLE_FIELD), ("locations", _LOCATION_FIELD)):
            count = count_top_level_field(raw, field, stop_after=max_samples)
            if count > max_samples:
                raise BudgetExceeded(f"profile {what}", "max_profile_samples", max_samples)
    message = profile_pb2.Profile()
    try:
        message.ParseFromString(raw)
    except (DecodeError, ValueError, RecursionError) as e:
        if "alloc failed" in str(e):  # upb's arena could not grow: a memory limit, not a corrupt profile
            raise MemoryError(str(e)) from None
        raise ProfileCorrupt(f"expected a pprof protobuf, saw bytes that do not decode ({e})") from None
    del raw
    return _resolve(message)


# Field numbers of perftools.profiles.Profile (profile.proto).
_SAMPLE_FIELD = 2
_LOCATION_FIELD = 4


def count_top_level_field(raw: bytes, field: int, *, stop_after: int) -> int:
    """How many times length-delimited `field` occurs at the top level of the protobuf message `raw`,
    scanning the wire format without decoding anything; stops counting past `stop_after`."""
    pos, end, count = 0, len(raw), 0
    while pos < end:
        key, pos = _varint(raw, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(raw, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(raw, pos)
            pos += length
            if key >> 3 == field:
                count += 1
                if count > stop_after:
                    return count
        elif wire == 5:
            pos += 4
        else:
            raise ProfileCorrupt(f"expected a pprof protobuf, saw wire type {wire} at byte {pos}")
    if pos > end:
        raise ProfileCorrupt("expected a pprof protobuf, saw a field running past the end")
    return count


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(raw) or shift > 63:
            raise ProfileCorrupt("expected a pprof protobuf, saw a truncated or overlong varint")
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _resolve(message: profile_pb2.Profile) -> Profile:
    strings = list(message.string_table)
    if not strings or strings[0] != "":
        raise ProfileCorrupt("expected a pprof protobuf, saw a string table that does not start with ''")
    if not message.sample_type:
        raise ProfileCorrupt("expected a pprof protobuf, saw a message without sample types")

    def text(index: int) -> str:
        if not 0 <= index < len(strings):
            raise ProfileCorrupt(f"expected string index < {len(strings)}, saw {index}")
        return strings[index]

    def value_type(vt: profile_pb2.ValueType) -> ValueType:
        return ValueType(text(vt.type), text(vt.unit))

    functions = {f.id: (text(f.name), text(f.filename)) for f in message.function}
    locations: dict[int, tuple[Frame, ...]] = {}
    for location in message.location:
        frames = []
        for line in location.line:
            if line.function_id not in functions:
                raise ProfileCorrupt(f"expected a known function id, saw {line.function_id}")
            name, filename = functions[line.function_id]
            frames.append(Frame(name, filename, line.line))
        # An unsymbolized location still has an address worth showing.
        locations[location.id] = tuple(frames) or (Frame(f"{location.address:#x}", "", 0),)

    width = len(message.sample_type)
    samples = []
    for sample in message.sample:
        if len(sample.value) != width:
            raise ProfileCorrupt(f"expected {width} values per sample, saw {len(sample.value)}")
        stack: list[Frame] = []
        for location_id in sample.location_id:
            if location_id not in locations:
                raise ProfileCorrupt(f"expected a known location id, saw {location_id}")
            stack.extend(locations[location_id])
        samples.append(ProfileSample(values=tuple(sample.value), stack=tuple(stack)))
    return Profile(
        sample_types=tuple(value_type(vt) for vt in message.sample_type),
        period_type=value_type(message.period_type) if message.HasField("period_type") else None,
        period=message.period,
        time_nanos=message.time_nanos,
        duration_nanos=message.duration_nanos,
        default_sample_type=text(message.default_sample_type) or None,
        samples=tuple(samples),
    )


def profile_info(profile: Profile) -> ProfileInfo:
    """Summarise a profile: its types, how many samples, and the total of each sample type."""
    totals = [0] * len(profile.sample_types)
    for sample in profile.samples:
        for index, value in enumerate(sample.values):
            totals[index] += value
    return ProfileInfo(
        period_type=profile.period_type,
        period=profile.period,
        sample_types=profile.sample_types,
        default_sample_type=profile.default_sample_type,
        sample_count=len(profile.samples),
        totals=tuple((t.type, total) for t, total in zip(profile.sample_types, totals, strict=True)),
        time_nanos=profile.time_nanos,
        duration_nanos=profile.duration_nanos,
    )


def allocation_site(stack: tuple[Frame, ...]) -> int:
    """Index of the frame that allocated: the innermost one outside the runtime's malloc plumbing."""
    for index, frame in enumerate(stack):
        if not is_runtime_function(frame.function):
            return index
    return 0


@dataclasses.dataclass
class _Site:
    before: int = 0
    after: int = 0
    # The stack that contributed most to `after`, to show where the site is reached from.
    best_stack: tuple[Frame, ...] = ()
    best_value: int = 0
    lines: dict[int, int] = dataclasses.field(default_factory=dict)


_SiteKey = tuple[str, str, int]  # function, file, line (0 when aggregating by function)


def _sites(base: Profile | None, new: Profile, sample_type: str, by_function: bool) -> dict[_SiteKey, _Site]:
    sites: dict[_SiteKey, _Site] = {}
    for profile, is_new in ((base, False), (new, True)):
        if profile is None:
            continue
        index = profile.sample_index(sample_type)
        for sample in profile.samples:
            value = sample.values[index]
            if not sample.stack or value == 0:
                continue
            at = allocation_site(sample.stack)
            frame = sample.stack[at]
            key = (frame.function, frame.file, 0 if by_function else frame.line)
            site = sites.setdefault(key, _Site())
            if is_new:
                site.after += value
                site.lines[frame.line] = site.lines.get(frame.line, 0) + value
                if value > site.best_value or not site.best_stack:
                    site.best_value, site.best_stack = value, sample.stack[at:]
            else:
                site.before += value
                if not site.best_stack:
                    site.best_stack = sample.stack[at:]
    return sites


def _growth(
    base: Profile | None, new: Profile, sample_type: str, limit: int, by_function: bool
) -> list[SiteGrowth]:
    sites = _sites(base, new, sample_type, by_function)
    growths = []
    for (function, file, _), site in sites.items():
        if site.after - site.before <= 0:
            continue
        line = max(site.lines, key=lambda ln: site.lines[ln]) if site.lines else site.best_stack[0].line
        stack = tuple(f"{f.function} {f.file}:{f.line}" for f in site.best_stack[:STACK_FRAMES])
        growths.append(
            SiteGrowth(
                function=function, file=file, line=line, before=site.before, after=site.after, stack=stack
            )
        )
    growths.sort(key=lambda g: (-g.delta, g.function, g.line))
    return growths[:limit]


def top_growth(
    base: Profile | None, new: Profile, sample_type: str = "inuse_space", limit: int = 10
) -> list[SiteGrowth]:
    """The allocation sites (function, file, line) whose `sample_type` grew most from `base` to `new`.

    Only growth is reported (delta > 0), largest first. `base=None` ranks sites by their value in `new`.
    Raises SampleTypeMissing when a profile lacks `sample_type`.
    """
    return _growth(base, new, sample_type, limit, by_function=False)


def top_growth_by_function(
    base: Profile | None, new: Profile, sample_type: str = "inuse_space", limit: int = 10
) -> list[SiteGrowth]:
    """Like top_growth, but sites in the same function add up: a leak spread over several lines ranks once."""
    return _growth(base, new, sample_type, limit, by_function=True)
