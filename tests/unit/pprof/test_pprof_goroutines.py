"""goroutine?debug=1: parsing real snapshots, naming the leak across t0→t1→t2, labels, the stuck finalizer."""

from __future__ import annotations

import pathlib

import pytest

from memorywatch.pprof import (
    Frame,
    GoroutineProfile,
    MalformedText,
    blocked_finalizer,
    diff_goroutines,
    group_name,
    growing_groups,
    parse_goroutine_debug1,
)

DATA = pathlib.Path(__file__).resolve().parent / "data"


def snapshots(fixtures: pathlib.Path) -> list[GoroutineProfile]:
    return [parse_goroutine_debug1((fixtures / f"goroutine_debug1_t{i}.txt").read_text()) for i in range(3)]


def test_parse_a_real_snapshot(go_fixtures_dir: pathlib.Path) -> None:
    t0 = snapshots(go_fixtures_dir)[0]
    assert t0.total == 50
    assert sum(g.count for g in t0.groups) == t0.total
    leak = t0.groups[0]  # Go sorts groups by count, largest first
    assert leak.count == 43
    assert leak.pcs == (0x48BAAE, 0x41B14E, 0x41AC92, 0x6C04D5, 0x4933E1)
    assert leak.labels is None
    # runtime/pprof hides the leading runtime frames (gopark, chanrecv): only the user frame is printed.
    assert leak.frames == (Frame("main.blockForever", "/work/main/tests/gotargets/behaviours.go", 103),)
    # Frames separated by several tabs (Go's tabwriter) still parse.
    accept = next(g for g in t0.groups if any(f.function == "net/http.(*Server).Serve" for f in g.frames))
    assert accept.frames[0] == Frame(
        "internal/poll.runtime_pollWait", "/usr/local/go/src/runtime/netpoll.go", 351
    )
    assert accept.frames[-1].function == "main.main.func1"


def test_a_goroutine_with_only_goexit_has_no_frames(go_fixtures_dir: pathlib.Path) -> None:
    profile = parse_goroutine_debug1((go_fixtures_dir / "goroutine_finalizer_debug1.txt").read_text())
    assert profile.groups[-1].pcs == (0x4933E1,)
    assert profile.groups[-1].frames == ()
    assert group_name(profile.groups[-1].frames) == "<no frames>"


def test_diff_names_the_leaking_function_first(go_fixtures_dir: pathlib.Path) -> None:
    t0, t1, _ = snapshots(go_fixtures_dir)
    growth = diff_goroutines(t0, t1)
    assert group_name(growth[0].frames) == "main.blockForever"
    assert (growth[0].before, growth[0].after, growth[0].delta) == (43, 103, 60)
    assert all(g.delta == 0 for g in growth[1:])


def test_diff_includes_new_and_vanished_groups() -> None:
    old = parse_goroutine_debug1(
        "goroutine profile: total 2\n2 @ 0x1 0x2\n#\t0x1\tmain.gone+0x1\t/src/a.go:1\n\n"
    )
    new = parse_goroutine_debug1(
        "goroutine profile: total 5\n5 @ 0x3 0x4\n#\t0x3\tmain.fresh+0x1\t/src/a.go:9\n\n"
    )
    growth = diff_goroutines(old, new)
    assert [(group_name(g.frames), g.before, g.after) for g in growth] == [
        ("main.fresh", 0, 5),
        ("main.gone", 2, 0),
    ]


def test_diff_keys_on_frames_not_pcs_so_it_works_across_restarts(go_fixtures_dir: pathlib.Path) -> None:
    # A rebuilt or restarted binary loads code at other addresses; the same stack must still line up.
    text = (go_fixtures_dir / "goroutine_debug1_t0.txt").read_text()
    moved = parse_goroutine_debug1(text.replace("0x48baae", "0x58baae").replace("0x6c04d5", "0x7c04d5"))
    growth = diff_goroutines(parse_goroutine_debug1(text), moved)
    assert all(g.delta == 0 for g in growth)


def test_growing_groups_across_three_snapshots(go_fixtures_dir: pathlib.Path) -> None:
    found = growing_groups(snapshots(go_fixtures_dir), min_delta=100)
    assert [(group_name(g.frames), g.before, g.after) for g in found] == [("main.blockForever", 43, 163)]
    assert growing_groups(snapshots(go_fixtures_dir), min_delta=121) == []


def test_a_burst_that_drains_is_not_growing(go_fixtures_dir: pathlib.Path) -> None:
    t0, t1, t2 = snapshots(go_fixtures_dir)
    # t1 has the most; t0 → t1 → t0 rises then falls.
    assert growing_groups([t0, t1, t0], min_delta=1) == []
    assert growing_groups([t0, t2, t1], min_delta=1) == []
    with pytest.raises(ValueError, match="at least 2"):
        growing_groups([t0], min_delta=1)


def test_labels_split_groups_and_survive_the_diff() -> None:
    profile = parse_goroutine_debug1((DATA / "goroutine_labels_debug1.txt").read_text())
    labelled = {g.labels: g.count for g in profile.groups if g.labels is not None}
    assert labelled == {'{"tenant":"a", "worker":"poller"}': 3, '{"tenant":"b", "worker":"poller"}': 1}
    waiting = [g for g in profile.groups if g.labels is not None]
    assert all(g.frames[0].function == "main.waitForever" for g in waiting)
    assert all(group_name(g.frames) == "main.waitForever" for g in waiting)
    growth = diff_goroutines(GoroutineProfile(total=0, groups=()), profile)
    assert growth[0].labels == '{"tenant":"a", "worker":"poller"}' and growth[0].delta == 3
    assert {g.labels: g.delta for g in growth if g.labels} == labelled


def test_blocked_finalizer_is_found(go_fixtures_dir: pathlib.Path) -> None:
    profile = parse_goroutine_debug1((go_fixtures_dir / "goroutine_finalizer_debug1.txt").read_text())
    group = blocked_finalizer(profile)
    assert group is not None
    # Go 1.26 calls the loop runtime.runFinalizers (older releases: runtime.runfinq).
    assert [f.function for f in group.frames] == ["main.stuckFinalizer", "runtime.runFinalizers"]
    assert group_name(group.frames) == "main.stuckFinalizer"


def test_no_blocked_finalizer_in_a_healthy_profile(go_fixtures_dir: pathlib.Path) -> None:
    for profile in snapshots(go_fixtures_dir):
        assert blocked_finalizer(profile) is None


def test_an_idle_finalizer_goroutine_is_not_blocked() -> None:
    # When nothing runs a finalizer, every frame is the runtime's and pprof prints them all.
    idle = parse_goroutine_debug1(
        "goroutine profile: total 1\n"
        "1 @ 0x48baae 0x42c917 0x4933e1\n"
        "#\t0x48baad\truntime.gopark+0xcd\t/usr/local/go/src/runtime/proc.go:460\n"
        "#\t0x42c916\truntime.runfinq+0x3f6\t/usr/local/go/src/runtime/mfinal.go:210\n\n"
    )
    assert blocked_finalizer(idle) is None


def test_group_names_prefer_program_code_then_the_goroutine_entry(go_fixtures_dir: pathlib.Path) -> None:
    names = {group_name(g.frames) for g in snapshots(go_fixtures_dir)[0].groups}
    # time.Sleep / select frames inside user code are skipped in favour of the user function;
    # stdlib-only goroutines are named after the function they were started with.
    assert "main.runLeaker" in names
    assert "os/signal.loop" in names
    assert "net/http.(*connReader).backgroundRead" in names
    assert group_name((Frame("time.Sleep", "", 1), Frame("github.com/acme/svc.(*Pool).run", "", 2))) == (
        "github.com/acme/svc.(*Pool).run"
    )


def test_a_profile_cut_mid_line_keeps_the_groups_that_arrived(go_fixtures_dir: pathlib.Path) -> None:
    text = (go_fixtures_dir / "goroutine_debug1_t2.txt").read_text()
    cut = text[: text.index("os/signal.signal_recv") + 5]
    profile = parse_goroutine_debug1(cut)
    assert profile.total == 170
    assert profile.groups[0].count == 163
    assert sum(g.count for g in profile.groups) < profile.total


def test_unknown_pcs_are_kept_as_frames() -> None:
    profile = parse_goroutine_debug1(
        "goroutine profile: total 1\n1 @ 0x1 0x2\n#\t0xdead\n#\t0x2\tmain.f+0x1\t/a.go:3\n"
    )
    assert profile.groups[0].frames == (Frame("0xdead", "", 0), Frame("main.f", "/a.go", 3))


def test_goroutineleak_profile_has_the_same_format() -> None:
    profile = parse_goroutine_debug1("goroutineleak profile: total 0\n")
    assert profile == GoroutineProfile(total=0, groups=())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "expected a Go goroutine profile"),
        ("<html><head><title>404</title></head></html>", "expected a Go goroutine profile"),
        ("heap profile: 1: 2 [3: 4] @ heap/1048576\n", "expected a Go goroutine profile"),
        ("goroutine profile: total 3\n3 @ 0x1\n<html>\n", "goroutine stack frame"),
        ("goroutine profile: total 3\nthree @ 0x1\n", "goroutine group"),
    ],
)
def test_foreign_text_is_refused(body: str, expected: str) -> None:
    with pytest.raises(MalformedText, match=expected):
        parse_goroutine_debug1(body)
