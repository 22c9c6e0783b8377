"""The /debug/pprof/ index page: the counts table, and refusing every page that is not it."""

from __future__ import annotations

import pathlib

import pytest

from memorywatch.pprof import NotPprofIndex, parse_index


def test_counts_from_the_real_index(go_fixtures_dir: pathlib.Path) -> None:
    counts = parse_index((go_fixtures_dir / "index.html").read_text())
    assert counts == {
        "allocs": 1,
        "block": 0,
        "cmdline": 0,
        "goroutine": 50,
        "heap": 1,
        "mutex": 0,
        "profile": 0,
        "symbol": 0,
        "threadcreate": 8,
        "trace": 0,
    }


def test_the_goroutine_count_matches_the_goroutine_profile_taken_next(go_fixtures_dir: pathlib.Path) -> None:
    counts = parse_index((go_fixtures_dir / "index.html").read_text())
    first_line = (go_fixtures_dir / "goroutine_debug1_t0.txt").read_text().splitlines()[0]
    assert first_line == f"goroutine profile: total {counts['goroutine']}"


def test_index_layouts_of_older_go_releases() -> None:
    page = (
        "<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n/debug/pprof/<br>\n<br>\n"
        "profiles:<br>\n<table>\n"
        '<tr><td align=right>12<td><a href="goroutine?debug=1">goroutine</a>\n'
        '<tr><td align=right>3<td><a href="heap?debug=1">heap</a>\n'
    )
    old = "<html><body>\n7\t<a href=\"goroutine?debug=1\">goroutine</a><br>\n2\t<a href='heap?debug=1'>heap</a><br>\n"
    assert parse_index(old) == {"goroutine": 7, "heap": 2}
    assert parse_index(page) == {"goroutine": 12, "heap": 3}


@pytest.mark.parametrize(
    ("page", "detail"),
    [
        ("", "no profile table"),
        (
            "<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body></body></html>",
            "no profile table",
        ),
        ('{"status": "ok", "goroutines": 12}', "no profile table"),
        ("<html><a href='foo?debug=1'>goroutine-ish</a></html>", "no profile table"),
        ("<tr><td>4</td><td><a href='goroutine?debug=1'>goroutine</a></td></tr>", "no heap row"),
    ],
)
def test_pages_that_are_not_the_index(page: str, detail: str) -> None:
    with pytest.raises(NotPprofIndex, match=detail) as caught:
        parse_index(page)
    assert "expected the net/http/pprof index page" in str(caught.value)
