"""A flame graph of heap growth, computed from two pprof profiles and drawn as inline SVG. Pure: no I/O.

Each stack's growth is its `inuse_space` in the capture minus the same stack's in the baseline (stacks
compared by function names, root first). Stacks that shrank are left out: the graph answers "where did
the new memory go". Without a baseline the graph shows what is in use now.

Bounded whatever the profile holds: stacks are cut at `max_depth_frames`, only the `max_stacks` stacks
that grew most are laid out (the rest are summed into one "(other stacks)" frame), nodes narrower than
`min_fraction` of the total are dropped, and at most `max_nodes` rectangles are drawn (widest first).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import operator

from memorywatch.api.units import format_bytes
from memorywatch.pprof.profiles import Profile

SAMPLE_TYPE = "inuse_space"
FRAME_HEIGHT_PX = 18
WIDTH_PX = 1200
CHAR_WIDTH_PX = 7  # 12px monospace, roughly
MAX_LABEL_CHARS = 300
OTHER_STACKS = "(other stacks)"
_FUNCTION = operator.attrgetter("function")


@dataclasses.dataclass(frozen=True)
class FlameLimits:
    max_depth_frames: int = 48
    max_stacks: int = 5000  # the stacks that grew most; the rest are summed into one "other stacks" frame
    max_nodes: int = 1500
    min_fraction: float = 0.002


@dataclasses.dataclass
class _Node:
    name: str
    value: int = 0
    children: dict[str, _Node] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FlameRect:
    """One frame of the graph: `x`/`width` are fractions of the total; `depth` 0 is the root."""

    name: str
    value_bytes: int
    depth: int
    x: float
    width: float


@dataclasses.dataclass(frozen=True)
class Flame:
    total_bytes: int
    rects: tuple[FlameRect, ...]
    dropped_nodes: int
    compared_to_baseline: bool


def _stack_values(profile: Profile, index: int, max_depth: int) -> dict[tuple[str, ...], int]:
    out: dict[tuple[str, ...], int] = {}
    for sample in profile.samples:
        names = tuple(map(_FUNCTION, reversed(sample.stack)))
        if len(names) > max_depth:  # keep the root side: that is where the graph is read from
            names = (*names[: max_depth - 1], "…")
        out[names] = out.get(names, 0) + sample.values[index]
    return out


def build_flame(new: Profile, base: Profile | None, limits: FlameLimits | None = None) -> Flame:
    """The growth tree of `new` over `base`, laid out. Raises SampleTypeMissing (a pprof error)."""
    limits = limits or FlameLimits()
    index = new.sample_index(SAMPLE_TYPE)
    grown = _stack_values(new, index, limits.max_depth_frames)
    if base is not None:
        for stack, value in _stack_values(
            base, base.sample_index(SAMPLE_TYPE), limits.max_depth_frames
        ).items():
            if stack in grown:
                grown[stack] -= value
    positive = sorted(((v, s) for s, v in grown.items() if v > 0), reverse=True)
    rest = sum(v for v, _ in positive[limits.max_stacks :])
    root = _Node("all")
    for value, stack in positive[: limits.max_stacks]:
        root.value += value
        node = root
        for name in stack:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _Node(name)
            child.value += value
            node = child
    if rest:
        root.value += rest
        root.children[OTHER_STACKS] = _Node(OTHER_STACKS, rest)
    return _layout(root, limits, compared_to_baseline=base is not None)


def _layout(root: _Node, limits: FlameLimits, *, compared_to_baseline: bool) -> Flame:
    total = root.value
    if total <= 0:
        return Flame(0, (), 0, compared_to_baseline)
    floor = total * limits.min_fraction
    rects: list[FlameRect] = []
    dropped = 0
    # Breadth first, widest first, so the node cap keeps the frames that carry the most memory.
    level: list[tuple[_Node, float, int]] = [(root, 0.0, 0)]
    while level:
        following: list[tuple[_Node, float, int]] = []
        for node, x, depth in sorted(level, key=lambda item: -item[0].value):
            if len(rects) >= limits.max_nodes:
                dropped += 1
                continue
            rects.append(FlameRect(node.name, node.value, depth, x / total, node.value / total))
            offset = x
            for child in sorted(node.children.values(), key=lambda c: c.name):
                if child.value >= floor:
                    following.append((child, offset, depth + 1))
                else:
                    dropped += 1
                offset += child.value
        level = following
    rects.sort(key=lambda r: (r.depth, r.x))
    return Flame(total, tuple(rects), dropped, compared_to_baseline)


def frame_colour(name: str) -> str:
    """A warm colour that is stable per package, so one package reads as one hue across the graph."""
    package = name.rsplit("/", 1)[-1].split(".", 1)[0]
    digest = hashlib.sha256(package.encode("utf-8", "replace")).digest()
    red = 215 + digest[0] % 40
    green = 90 + digest[1] % 110
    blue = 20 + digest[2] % 50
    return f"rgb({red},{green},{blue})"


def flame_svg(flame: Flame) -> str:
    """The graph as one `<svg>` element; each frame has a `<title>` tooltip with its function and size."""
    depth = max((r.depth for r in flame.rects), default=0) + 1
    height = depth * FRAME_HEIGHT_PX + 2
    parts = [
        f'<svg class="flame" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH_PX} {height}" '
        f'width="{WIDTH_PX}" height="{height}" role="img" aria-label="flame graph of heap growth">'
    ]
    for rect in flame.rects:
        x = rect.x * WIDTH_PX
        width = max(rect.width * WIDTH_PX, 0.5)
        y = rect.depth * FRAME_HEIGHT_PX
        name = html.escape(rect.name[:MAX_LABEL_CHARS])
        share = 100 * rect.value_bytes / flame.total_bytes
        colour = "rgb(180,180,180)" if rect.depth == 0 else frame_colour(rect.name)
        parts.append(
            f"<g><title>{name}: +{format_bytes(rect.value_bytes)} ({share:.1f}%)</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{FRAME_HEIGHT_PX - 1}" fill="{colour}"/>'
        )
        chars = int((width - 6) // CHAR_WIDTH_PX)
        if chars >= 3:
            label = rect.name if len(rect.name) <= chars else rect.name[: chars - 1] + "…"
            parts.append(f'<text x="{x + 3:.1f}" y="{y + FRAME_HEIGHT_PX - 5}">{html.escape(label)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
