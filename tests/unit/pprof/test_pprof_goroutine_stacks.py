"""goroutine?debug=2 dumps: every goroutine with its state, wait time, stack and creator."""

from __future__ import annotations

import collections
import pathlib

import pytest

from memorywatch.pprof import Frame, MalformedText, finalizer_goroutine, parse_goroutine_debug2

# The header variants runtime/traceback.go prints (goroutineheader), and a finalizer stuck in user code.
DUMP = """goroutine 7 [chan send, 47 minutes, locked to thread]:
main.stuckFinalizer(0xc000012345)
\t/src/app/final.go:12 +0x1d
runtime.runFinalizers()
\t/usr/local/go/src/runtime/mfinal.go:272 +0x3f6
created by runtime.createfing in goroutine 1
\t/usr/local/go/src/runtime/mfinal.go:180 +0x3d

goroutine 9 gp=0xc000003dc0 m=nil [select (no cases), 3 minutes]:
main.idle(...)
\t/src/app/main.go:40
...additional frames elided...
created by main.main
\t/src/app/main.go:20 +0x25
"""


def test_the_real_dump_of_a_goroutine_leak(go_fixtures_dir: pathlib.Path) -> None:
    stacks = parse_goroutine_debug2((go_fixtures_dir / "goroutine_debug2.txt").read_text())
    # The dump was taken right after goroutine_debug1_t2.txt (`total 170`).
    assert len(stacks) == 170
    states = collections.Counter(s.state for s in stacks)
    assert states["chan receive"] == 163
    assert sum(1 for s in stacks if s.state == "running") == 1
    leaked = [s for s in stacks if s.created_by == "main.leakGoroutines"]
    assert len(leaked) == 163
    assert leaked[0].frames == (Frame("main.blockForever", "/work/main/tests/gotargets/behaviours.go", 103),)
    assert leaked[0].parent_id == 25
    # Taken seconds after start: Go records no wait minutes below one minute.
    assert all(s.wait_minutes is None for s in stacks)
    main = next(s for s in stacks if s.id == 1)
    assert (main.state, main.frames[0].function, main.created_by) == ("select", "main.main", None)


def test_header_variants_and_a_stuck_finalizer() -> None:
    stuck, idle = parse_goroutine_debug2(DUMP)
    assert (stuck.id, stuck.state, stuck.wait_minutes, stuck.locked_to_thread) == (7, "chan send", 47, True)
    assert [f.function for f in stuck.frames] == ["main.stuckFinalizer", "runtime.runFinalizers"]
    assert (stuck.created_by, stuck.parent_id) == ("runtime.createfing", 1)
    assert (idle.id, idle.state, idle.wait_minutes, idle.locked_to_thread) == (
        9,
        "select (no cases)",
        3,
        False,
    )
    assert idle.frames[0] == Frame("main.idle", "/src/app/main.go", 40)
    assert idle.created_by == "main.main" and idle.parent_id is None
    assert finalizer_goroutine([idle, stuck]) == stuck
    assert finalizer_goroutine([idle]) is None


def test_a_dump_cut_short_keeps_what_arrived() -> None:
    mid_header = DUMP[: DUMP.index("goroutine 9") + 30]
    assert [s.id for s in parse_goroutine_debug2(mid_header)] == [7]
    mid_frame = DUMP[: DUMP.index("main.go:40") + 5]
    stacks = parse_goroutine_debug2(mid_frame)
    assert [s.id for s in stacks] == [7, 9]
    assert stacks[1].frames == ()  # its first location line had not fully arrived


@pytest.mark.parametrize(
    "body",
    [
        "",
        "goroutine profile: total 3\n",
        "<html>oops</html>",
        "goroutine 1 [running]:\nmain.main()\n\tno line number\n",
    ],
)
def test_text_that_is_not_a_dump(body: str) -> None:
    with pytest.raises(MalformedText, match="expected a"):
        parse_goroutine_debug2(body)
