"""The scraper against real misbehaving HTTP servers on 127.0.0.1: each failure is one typed, bounded, helpful error."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import pathlib
import socket
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Callable

import pytest

from memorywatch.pprof.heap_text import parse_heap_text
from memorywatch.scrape import (
    HTTPStatusError,
    Limits,
    MalformedResponse,
    NotAGoTarget,
    NotFound,
    ResponseTooLarge,
    ScrapeError,
    Scraper,
    ScrapeTimeout,
    TargetConfig,
    TargetUnreachable,
    TLSConfig,
    TLSFailure,
    Unauthorized,
)
from scrape.hostile_servers import (
    NGINX_DEFAULT_PAGE,
    RawServer,
    Request,
    gzip_bomb,
    respond,
    send_chunk,
    start_chunked,
)

TOKEN = "s3cr3t-token-do-not-leak"
SLACK_SECONDS = 1.5


@pytest.fixture
def recorded(go_fixtures_dir: pathlib.Path) -> Callable[[str], bytes]:
    return lambda name: (go_fixtures_dir / name).read_bytes()


def go_like(
    recorded: Callable[[str], bytes], overrides: dict[str, Callable[[Request, asyncio.StreamWriter], object]]
):
    """A handler that serves recorded Go output, except for the paths in `overrides`."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        override = overrides.get(request.path)
        if override is not None:
            await override(request, writer)  # type: ignore[misc]
        elif request.path == "/debug/pprof/":
            await respond(writer, 200, recorded("index.html"), content_type="text/html; charset=utf-8")
        elif request.path == "/debug/pprof/heap" and "debug=1" in request.target:
            await respond(writer, 200, recorded("heap_debug1.txt"))
        elif request.path == "/debug/pprof/heap":
            await respond(writer, 200, recorded("heap_base.pb.gz"), content_type="application/octet-stream")
        else:
            await respond(writer, 404, b"404 page not found\n")

    return handler


async def never_answer(request: Request, writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()


async def test_recorded_go_output_gives_a_full_sample(recorded: Callable[[str], bytes]) -> None:
    async with RawServer(go_like(recorded, {})) as server, Scraper(proc_rss=False) as scraper:
        sample = await scraper.sample(TargetConfig(server.url, name="recorded"), now=lambda: 1234.0)
    assert sample.target == "recorded" and sample.time == 1234.0
    assert sample.goroutines == 50  # the index page's count
    assert sample.memstats is not None and sample.memstats.heap_alloc
    assert sample.heap_live_bytes and sample.heap_live_bytes > 0
    assert sample.rss_source == "maxrss" and sample.rss_bytes == sample.memstats.max_rss


async def test_connection_refused_is_target_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    async with Scraper() as scraper:
        with pytest.raises(TargetUnreachable) as caught:
            await scraper.sample(TargetConfig(f"http://127.0.0.1:{port}", bearer_token=TOKEN))
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "/debug/pprof/" in message
    assert "running and listening" in message
    assert TOKEN not in message


async def test_silent_server_times_out_within_the_read_bound() -> None:
    limits = Limits(read_timeout_seconds=0.5, total_timeout_seconds=5)
    async with RawServer(never_answer) as server, Scraper(limits) as scraper:
        started = time.monotonic()
        with pytest.raises(ScrapeTimeout) as caught:
            await scraper.sample(TargetConfig(server.url))
        elapsed = time.monotonic() - started
    assert caught.value.phase == "read"
    assert 0.5 <= elapsed < 0.5 + SLACK_SECONDS
    assert "read timeout after 0.5s" in str(caught.value)


async def test_silent_server_is_stopped_by_the_total_bound() -> None:
    limits = Limits(read_timeout_seconds=30, total_timeout_seconds=1)
    async with RawServer(never_answer) as server, Scraper(limits) as scraper:
        started = time.monotonic()
        with pytest.raises(ScrapeTimeout) as caught:
            await scraper.sample(TargetConfig(server.url))
        elapsed = time.monotonic() - started
    assert caught.value.phase == "total"
    assert 1 <= elapsed < 1 + SLACK_SECONDS


async def test_requests_sent_in_turn_share_the_total_bound(recorded: Callable[[str], bytes]) -> None:
    async def slow_index(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.6)
        await respond(writer, 200, recorded("index.html"), content_type="text/html; charset=utf-8")

    # 1.4 s of slack for the index page on a loaded machine; a heap request with a 2 s bound of its own would
    # end at 2.6 s, past what is asserted below.
    limits = Limits(read_timeout_seconds=30, total_timeout_seconds=2)
    overrides = {"/debug/pprof/": slow_index, "/debug/pprof/heap": never_answer}
    async with RawServer(go_like(recorded, overrides)) as server, Scraper(limits) as scraper:
        started = time.monotonic()
        with pytest.raises(ScrapeTimeout) as caught:
            await scraper.sample(TargetConfig(server.url))
        elapsed = time.monotonic() - started
    # The heap request after a 0.6 s index page gets what is left of the sample's 2 s, not 2 s of its own.
    assert caught.value.phase == "total" and "/debug/pprof/heap" in str(caught.value), caught.value
    assert 2 <= elapsed < 2 + SLACK_SECONDS / 3


async def test_trickling_body_is_stopped_by_the_total_bound(recorded: Callable[[str], bytes]) -> None:
    async def trickle(request: Request, writer: asyncio.StreamWriter) -> None:
        await start_chunked(writer)
        await send_chunk(writer, b"heap profile: 1: 1 [1: 1] @ heap/1048576\n")
        while True:  # one byte every 100 ms, forever: never silent long enough for the read timeout
            await send_chunk(writer, b"#")
            await asyncio.sleep(0.1)

    limits = Limits(read_timeout_seconds=5, total_timeout_seconds=1.5)
    async with (
        RawServer(go_like(recorded, {"/debug/pprof/heap": trickle})) as server,
        Scraper(limits) as scraper,
    ):
        started = time.monotonic()
        with pytest.raises(ScrapeTimeout) as caught:
            await scraper.sample(TargetConfig(server.url))
        elapsed = time.monotonic() - started
    assert caught.value.phase == "total" and caught.value.path == "/debug/pprof/heap?debug=1"
    assert 1.5 <= elapsed < 1.5 + SLACK_SECONDS


async def test_connect_timeout_when_the_listen_backlog_is_full() -> None:
    # A socket that listens but never accepts: once its backlog is full, the kernel drops further SYNs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.2)
        limits = Limits(connect_timeout_seconds=0.5, total_timeout_seconds=5)
        async with Scraper(limits) as scraper:
            started = time.monotonic()
            with pytest.raises(ScrapeTimeout) as caught:
                await scraper.sample(TargetConfig(f"http://127.0.0.1:{port}"))
            elapsed = time.monotonic() - started
        assert caught.value.phase == "connect"
        assert elapsed < 0.5 + SLACK_SECONDS
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_nginx_page_is_not_a_go_target() -> None:
    async def nginx(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, NGINX_DEFAULT_PAGE, content_type="text/html")

    async with RawServer(nginx) as server, Scraper() as scraper:
        with pytest.raises(NotAGoTarget) as caught:
            await scraper.sample(TargetConfig(server.url))
    message = str(caught.value)
    assert caught.value.path == "/debug/pprof/"
    assert "Welcome to nginx!" in message and "HTML page" in message
    assert "pprof port" in message


async def test_json_api_is_not_a_go_target() -> None:
    async def api(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, b'{"status": "ok", "items": []}', content_type="application/json")

    async with RawServer(api) as server, Scraper() as scraper:
        with pytest.raises(NotAGoTarget) as caught:
            await scraper.sample(TargetConfig(server.url))
    assert "JSON document" in str(caught.value) and "status" in str(caught.value)


async def test_server_error_is_http_status_error_with_a_sanitized_excerpt(
    recorded: Callable[[str], bytes],
) -> None:
    async def broken(request: Request, writer: asyncio.StreamWriter) -> None:
        body = f"<h1>Internal\x1b[31m error</h1>\n\n  token was {TOKEN} " + "x" * 1000
        await respond(writer, 500, body.encode(), content_type="text/html")

    async with (
        RawServer(go_like(recorded, {"/debug/pprof/heap": broken})) as server,
        Scraper() as scraper,
    ):
        with pytest.raises(HTTPStatusError) as caught:
            await scraper.sample(TargetConfig(server.url, bearer_token=TOKEN))
    err = caught.value
    assert err.status_code == 500 and err.path == "/debug/pprof/heap?debug=1"
    assert err.body_excerpt.startswith("Internal [31m error token was [redacted]")
    assert len(err.body_excerpt) <= 200
    assert TOKEN not in str(err) and "\x1b" not in str(err)
    # The server really got the token: the redaction is ours, not a missing header.
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_unauthorized_and_not_found_carry_hints() -> None:
    async def deny(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 401, b"unauthorized\n", headers={"WWW-Authenticate": "Bearer"})

    async def missing(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 404, b"404 page not found\n")

    async with RawServer(deny) as denier, RawServer(missing) as empty, Scraper() as scraper:
        with pytest.raises(Unauthorized) as denied:
            await scraper.sample(TargetConfig(denier.url, bearer_token=TOKEN))
        with pytest.raises(NotFound) as not_found:
            await scraper.sample(TargetConfig(empty.url))
    assert "bearer token Secret" in str(denied.value) and TOKEN not in str(denied.value)
    assert "TargetConfig" not in repr(denied.value) or TOKEN not in repr(denied.value)
    assert "mounted at the configured pprof path" in str(not_found.value)


async def test_endless_heap_text_hits_the_text_cap(recorded: Callable[[str], bytes]) -> None:
    async def endless(request: Request, writer: asyncio.StreamWriter) -> None:
        await start_chunked(writer)
        await send_chunk(writer, b"heap profile: 1: 1 [1: 1] @ heap/1048576\n")
        record = b"1: 4096 [1: 4096] @ 0x4a1b2c 0x4a1b2d\n#\t0x4a1b2c\tmain.f+0x1c\t/src/main.go:10\n\n"
        while True:
            await send_chunk(writer, record * 500)

    limits = Limits(max_text_bytes=1024 * 1024)
    async with (
        RawServer(go_like(recorded, {"/debug/pprof/heap": endless})) as server,
        Scraper(limits) as scraper,
    ):
        started = time.monotonic()
        with pytest.raises(ResponseTooLarge) as caught:
            await scraper.sample(TargetConfig(server.url))
    assert time.monotonic() - started < 5
    assert caught.value.limit_name == "max_text_bytes" and caught.value.limit_bytes == 1024 * 1024
    assert "Raise Limits.max_text_bytes" in str(caught.value)


async def test_gzip_encoded_text_bomb_is_capped_after_decoding(recorded: Callable[[str], bytes]) -> None:
    bomb = gzip_bomb(expanded_mib=1024)

    async def encoded(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, bomb, headers={"Content-Encoding": "gzip"})

    limits = Limits(max_text_bytes=4 * 1024 * 1024)
    async with (
        RawServer(go_like(recorded, {"/debug/pprof/heap": encoded})) as server,
        Scraper(limits) as scraper,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(ScrapeError) as caught:
                await scraper.sample(TargetConfig(server.url))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # Zeros are not a heap profile header, and whatever the parser says, memory stayed near the cap.
    assert isinstance(caught.value, ResponseTooLarge | MalformedResponse)
    assert peak < 64 * 1024 * 1024


async def test_truncated_and_corrupt_profiles_are_malformed(recorded: Callable[[str], bytes]) -> None:
    good = recorded("heap_base.pb.gz")
    corrupt = gzip.compress(b"\x0a\xff\xff\xff\xff\x0f this is not a protobuf")

    async def cut(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, good[: len(good) // 2], content_type="application/octet-stream")

    async def garbage(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, corrupt, content_type="application/octet-stream")

    handlers = {"/debug/pprof/allocs": cut, "/debug/pprof/goroutine": garbage}
    async with RawServer(go_like(recorded, handlers)) as server, Scraper() as scraper:
        target = TargetConfig(server.url)
        assert await scraper.fetch_profile(target, "heap") == good  # byte for byte as served
        with pytest.raises(MalformedResponse) as truncated:
            await scraper.fetch_profile(target, "allocs")
        with pytest.raises(MalformedResponse) as broken:
            await scraper.fetch_profile(target, "goroutine")
    assert "/debug/pprof/allocs" in str(truncated.value) and "gzip" in str(truncated.value)
    assert "/debug/pprof/goroutine" in str(broken.value)


async def test_gzip_bomb_profile_is_refused_quickly_with_bounded_memory(
    recorded: Callable[[str], bytes],
) -> None:
    bomb = gzip_bomb(expanded_mib=4096)  # 4 MiB on the wire, 4 GiB inflated

    async def serve_bomb(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, bomb, content_type="application/octet-stream")

    limits = Limits(max_decompressed_bytes=16 * 1024 * 1024)
    async with (
        RawServer(go_like(recorded, {"/debug/pprof/heap": serve_bomb})) as server,
        Scraper(limits) as scraper,
    ):
        started = time.monotonic()
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLarge) as caught:
                await scraper.fetch_profile(TargetConfig(server.url), "heap")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 80 * 1024 * 1024
    assert caught.value.limit_name == "max_decompressed_bytes"
    assert "max_decompressed_bytes" in str(caught.value)


async def test_oversized_profile_hits_the_profile_cap(recorded: Callable[[str], bytes]) -> None:
    async def huge(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, bytes(3 * 1024 * 1024), content_type="application/octet-stream")

    limits = Limits(max_profile_bytes=1024 * 1024)
    async with (
        RawServer(go_like(recorded, {"/debug/pprof/heap": huge})) as server,
        Scraper(limits) as scraper,
    ):
        with pytest.raises(ResponseTooLarge) as caught:
            await scraper.fetch_profile(TargetConfig(server.url), "heap")
    assert caught.value.limit_name == "max_profile_bytes"


async def test_stacks_past_the_cap_come_back_truncated(recorded: Callable[[str], bytes]) -> None:
    stacks = recorded("goroutine_debug2.txt")

    async def dump(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, stacks)

    async with (
        RawServer(go_like(recorded, {"/debug/pprof/goroutine": dump})) as server,
        Scraper() as scraper,
    ):
        target = TargetConfig(server.url)
        whole = await scraper.fetch_text(target, "goroutine", params={"debug": 2})
        cut = await scraper.fetch_text(target, "goroutine", params={"debug": 2}, max_bytes=10_000)
    assert whole.data == stacks and not whole.truncated
    assert cut.truncated and cut.data == stacks[:10_000] and cut.limit_bytes == 10_000


async def test_missing_tls_files_are_a_tls_failure_not_a_crash() -> None:
    async with Scraper() as scraper:
        target = TargetConfig("https://127.0.0.1:1", tls=TLSConfig(ca_file="/nonexistent/ca.pem"))
        with pytest.raises(TLSFailure) as caught:
            await scraper.sample(target)
    assert "cannot load the TLS files" in str(caught.value)


async def test_server_that_hangs_up_is_unreachable() -> None:
    async def hang_up(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with RawServer(hang_up) as server, Scraper() as scraper:
        with pytest.raises(TargetUnreachable) as caught:
            await scraper.sample(TargetConfig(server.url))
    assert "/debug/pprof/" in str(caught.value)


async def test_metrics_probed_once_and_not_asked_again_when_absent(recorded: Callable[[str], bytes]) -> None:
    async with RawServer(go_like(recorded, {})) as server, Scraper(proc_rss=False) as scraper:
        target = TargetConfig(server.url)
        clock = [1000.0]
        for _ in range(3):
            sample = await scraper.sample(target, now=lambda: clock[0])
            clock[0] += 30
        assert sample.rss_source == "maxrss"
        assert [r.path for r in server.requests].count("/metrics") == 1
        clock[0] += Limits().metrics_reprobe_seconds
        await scraper.sample(target, now=lambda: clock[0])
        assert [r.path for r in server.requests].count("/metrics") == 2
    # Keep-alive: every request of every interval went over one or a few pooled connections.
    assert server.connections <= 4


async def test_the_requests_of_every_interval_share_one_kept_alive_connection(
    recorded: Callable[[str], bytes],
) -> None:
    async with RawServer(go_like(recorded, {})) as server, Scraper(proc_rss=False) as scraper:
        target = TargetConfig(server.url)
        for _ in range(4):  # index, heap and (the first time) /metrics each interval, one after the other
            await scraper.sample(target)
        assert len(server.requests) == 9
    assert server.connections == 1  # one connection's client state per target, not two or three


async def test_a_failed_index_page_does_not_skip_the_heap_request(recorded: Callable[[str], bytes]) -> None:
    async def refuse(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 500, b"boom\n")

    async with (
        RawServer(go_like(recorded, {"/debug/pprof/": refuse})) as server,
        Scraper(proc_rss=False) as scraper,
    ):
        with pytest.raises(ScrapeError) as caught:
            await scraper.sample(TargetConfig(server.url))
    assert "/debug/pprof/" in str(caught.value)  # the index's failure is the one reported, as before
    assert [r.path for r in server.requests][:2] == ["/debug/pprof/", "/debug/pprof/heap"]


async def test_a_sample_cancelled_on_its_first_request_leaves_no_request_unawaited(
    recorded: Callable[[str], bytes],
) -> None:
    async with (
        RawServer(go_like(recorded, {"/debug/pprof/": never_answer})) as server,
        Scraper(proc_rss=False) as scraper,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
            task = asyncio.create_task(scraper.sample(TargetConfig(server.url)))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gc.collect()
    assert [r.path for r in server.requests] == ["/debug/pprof/"]


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
async def test_heap_text_in_odd_chunks_or_compressed_by_a_proxy_parses_the_same(
    recorded: Callable[[str], bytes], encoding: str
) -> None:
    text = recorded("heap_debug1.txt")
    expected = parse_heap_text(text.decode())
    wire = {"identity": text, "gzip": gzip.compress(text), "deflate": zlib.compress(text)}[encoding]

    async def dribble(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
            + (f"Content-Encoding: {encoding}\r\n".encode() if encoding != "identity" else b"")
            + b"\r\n"
        )
        for start in range(0, len(wire), 7):  # 7-byte pieces split lines and CRLFs anywhere
            await send_chunk(writer, wire[start : start + 7])
        await send_chunk(writer, b"")

    async with (
        RawServer(go_like(recorded, {"/debug/pprof/heap": dribble})) as server,
        Scraper(proc_rss=False) as scraper,
    ):
        sample = await scraper.sample(TargetConfig(server.url))
    assert expected.memstats is not None
    assert sample.memstats == expected.memstats.without_arrays()  # a sample keeps no PauseNs/PauseEnd
    assert sample.heap_live_bytes == expected.live_bytes_estimate
    assert sample.heap_live_objects == expected.live_objects_estimate


async def test_targets_that_went_away_leave_no_connections_behind(
    recorded: Callable[[str], bytes],
) -> None:
    """Each target keeps its one connection across samples; the targets no longer sampled (deleted pods) have
    theirs closed after the keep-alive expiry, and every target shares one session per TLS setting."""
    limits = Limits(keepalive_expiry_seconds=0.3)
    async with (
        RawServer(go_like(recorded, {})) as a,
        RawServer(go_like(recorded, {})) as b,
        RawServer(go_like(recorded, {})) as c,
        Scraper(limits, proc_rss=False) as scraper,
    ):
        for server in (a, b, c):
            await scraper.sample(TargetConfig(server.url))
        assert [s.open_connections for s in (a, b, c)] == [1, 1, 1]
        assert scraper.open_sessions == 1, "one session for the three plain-HTTP targets"
        deadline = asyncio.get_running_loop().time() + 10
        while b.open_connections or c.open_connections:  # aiohttp closes them within about two expiries
            assert asyncio.get_running_loop().time() < deadline, "idle connections were never closed"
            await scraper.sample(TargetConfig(a.url))  # only `a` is still watched
            await asyncio.sleep(0.1)
        await scraper.sample(TargetConfig(a.url))
        assert a.connections >= 1 and a.open_connections == 1
        assert scraper.open_sessions == 1


async def test_samples_in_flight_are_bounded(recorded: Callable[[str], bytes]) -> None:
    in_flight = 0
    most = 0

    async def slow_index(request: Request, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        await respond(writer, 200, recorded("index.html"), content_type="text/html; charset=utf-8")

    async with (
        RawServer(go_like(recorded, {"/debug/pprof/": slow_index})) as server,
        Scraper(proc_rss=False, max_concurrent_samples=3) as scraper,
    ):
        targets = [TargetConfig(server.url, name=f"t{i}") for i in range(12)]
        samples = await asyncio.gather(*(scraper.sample(t) for t in targets))
    assert [s.target for s in samples] == [f"t{i}" for i in range(12)]
    assert most == 3  # all twelve were asked for at once; never more than three hit the targets together
