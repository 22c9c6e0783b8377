"""The scraper against real servers that break HTTP itself (redirects, oversized or garbled heads, bodies cut
short): each is one typed, bounded error naming target and path, and nothing is followed or kept."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable

import pytest

from memorywatch.scrape import (
    HTTPStatusError,
    Limits,
    Scraper,
    ScrapeTimeout,
    TargetConfig,
    TargetUnreachable,
)
from scrape.hostile_servers import RawServer, Request, respond

TOKEN = "s3cr3t-token-do-not-leak"


@pytest.fixture
def recorded(go_fixtures_dir: pathlib.Path) -> Callable[[str], bytes]:
    return lambda name: (go_fixtures_dir / name).read_bytes()


async def test_a_redirect_is_refused_not_followed_and_its_query_not_shown(
    recorded: Callable[[str], bytes],
) -> None:
    async def elsewhere(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, recorded("index.html"), content_type="text/html; charset=utf-8")

    async with RawServer(elsewhere) as other:

        async def redirect(request: Request, writer: asyncio.StreamWriter) -> None:
            location = f"{other.url}/debug/pprof/?token=leaked"
            await respond(writer, 302, b"", headers={"Location": location})

        async with RawServer(redirect) as server, Scraper(proc_rss=False) as scraper:
            with pytest.raises(HTTPStatusError) as caught:
                await scraper.sample(TargetConfig(server.url, bearer_token=TOKEN))
    assert caught.value.status_code == 302
    assert f"redirected to {other.url}/debug/pprof/" in str(caught.value)
    assert "leaked" not in str(caught.value) and TOKEN not in str(caught.value)
    assert other.requests == []  # never followed, so the token never went to another host


async def test_a_peer_that_does_not_speak_http_is_unreachable() -> None:
    async def banner(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(banner) as server, Scraper(proc_rss=False) as scraper:
        started = time.monotonic()
        with pytest.raises(TargetUnreachable) as caught:
            await scraper.sample(TargetConfig(server.url))
    assert time.monotonic() - started < 3
    assert "does not speak HTTP/1.1" in str(caught.value) and "/debug/pprof/" in str(caught.value)


async def test_an_endless_response_head_is_cut_off_early() -> None:
    async def endless_header(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Filler: ")
        for _ in range(64):  # 4 MiB of one header line, never ended
            writer.write(b"a" * 65536)
            await writer.drain()
        await asyncio.sleep(5)

    async with RawServer(endless_header) as server, Scraper(proc_rss=False) as scraper:
        started = time.monotonic()
        with pytest.raises(TargetUnreachable) as caught:
            await scraper.sample(TargetConfig(server.url, metrics_path=None))
    assert time.monotonic() - started < 3
    assert "does not speak HTTP/1.1" in str(caught.value)


async def test_a_body_cut_short_of_its_length_is_unreachable_not_a_partial_sample(
    recorded: Callable[[str], bytes],
) -> None:
    text = recorded("heap_debug1.txt")

    async def cut(request: Request, writer: asyncio.StreamWriter) -> None:
        if request.path == "/debug/pprof/":
            await respond(writer, 200, recorded("index.html"), content_type="text/html; charset=utf-8")
            return
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(text)}\r\n\r\n"
        writer.write(head.encode() + text[: len(text) // 2])
        await writer.drain()
        writer.close()

    async with RawServer(cut) as server, Scraper(proc_rss=False) as scraper:
        with pytest.raises(TargetUnreachable) as caught:
            await scraper.sample(TargetConfig(server.url, metrics_path=None))
    assert "/debug/pprof/heap?debug=1" in str(caught.value)


async def test_a_slow_response_head_is_stopped_by_the_total_bound() -> None:
    async def slow_head(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        while True:  # a header line every 100 ms: never silent long enough for the read timeout
            writer.write(b"X-A: b\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    limits = Limits(read_timeout_seconds=5, total_timeout_seconds=1)
    async with RawServer(slow_head) as server, Scraper(limits, proc_rss=False) as scraper:
        started = time.monotonic()
        with pytest.raises(ScrapeTimeout) as caught:
            await scraper.sample(TargetConfig(server.url, metrics_path=None))
    elapsed = time.monotonic() - started
    assert caught.value.phase == "total"  # ten header lines a second stay under the head's size limits
    assert 1 <= elapsed < 1 + 1.5


async def test_credentials_in_the_url_are_basic_auth_and_never_go_with_a_bearer_token(
    recorded: Callable[[str], bytes],
) -> None:
    seen: list[str | None] = []

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        seen.append(request.headers.get("authorization"))
        if request.path == "/debug/pprof/":
            await respond(writer, 200, recorded("index.html"), content_type="text/html; charset=utf-8")
        else:
            await respond(writer, 200, recorded("heap_debug1.txt"))

    async with RawServer(answer) as server, Scraper(proc_rss=False) as scraper:
        url = server.url.replace("http://", "http://user:pw@")
        sample = await scraper.sample(TargetConfig(url, metrics_path=None))
        # One request carries one Authorization header: both at once are refused before any request.
        with pytest.raises(ValueError, match="give only one of them"):
            TargetConfig(url, bearer_token=TOKEN, metrics_path=None)
    assert sample.memstats is not None
    assert seen == ["Basic dXNlcjpwdw=="] * 2
