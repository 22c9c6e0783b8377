"""Proves each behaviour of the real Go target (tests/gotargets) does what the rest of the suite relies on.

Plain httpx and regexes only, so these tests stand apart from the project's own parsers.
"""

from __future__ import annotations

import gzip
import json
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import time

import httpx
import pytest
import trustme

from support.gotargets import (
    GoTarget,
    GoTargetBuildError,
    GoTargetFactory,
    GoTargetStartError,
    build_gotarget,
)

pytestmark = pytest.mark.slow

MiB = 1 << 20
INDEX_GOROUTINES = re.compile(r"<td>(\d+)</td><td><a href='goroutine\?debug=1'>goroutine</a>")


def client(**kwargs: object) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=30, **kwargs)  # type: ignore[arg-type]


def goroutine_count(http: httpx.Client, target: GoTarget) -> int:
    response = http.get(target.pprof_url)
    response.raise_for_status()
    match = INDEX_GOROUTINES.search(response.text)
    assert match, response.text[:500]
    return int(match.group(1))


def memstat(text: str, field: str) -> int:
    match = re.search(rf"^# {field} = (\d+)$", text, re.MULTILINE)
    assert match, f"{field} missing from heap?debug=1"
    return int(match.group(1))


def heap_after_gc(http: httpx.Client, target: GoTarget) -> str:
    response = http.get(target.pprof_url + "heap", params={"debug": "1", "gc": "1"})
    response.raise_for_status()
    return response.text


def vm_rss_bytes(pid: int) -> int:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert match
    return int(match.group(1)) * 1024


def prom_value(text: str, name: str) -> int:
    match = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return int(match.group(1))


def test_goroutine_leak_count_rises_by_rate_and_names_the_leak(gotarget: GoTargetFactory) -> None:
    rate = 50
    target = gotarget("goroutine-leak", rate=rate)
    with client() as http:
        before, t0 = goroutine_count(http, target), time.monotonic()
        time.sleep(3)
        after, t1 = goroutine_count(http, target), time.monotonic()
        expected = rate * (t1 - t0)
        assert 0.7 * expected <= after - before <= 1.3 * expected + 10

        debug1 = http.get(target.pprof_url + "goroutine", params={"debug": "1"}).text
        biggest = re.search(r"^(\d+) @[ 0-9a-fx]+\n((?:#.*\n)+)", debug1, re.MULTILINE)
        assert biggest and "main.blockForever" in biggest.group(2)
        assert int(biggest.group(1)) >= after - 10

        debug2 = http.get(target.pprof_url + "goroutine", params={"debug": "2"}).text
        assert re.search(
            r"\[chan receive\]:\nmain\.blockForever\(.*\n.*\ncreated by main\.leakGoroutines", debug2
        )


def test_max_caps_the_leak_and_leak_after_delays_it(gotarget: GoTargetFactory) -> None:
    capped = gotarget("goroutine-leak", rate=1000, max=40)
    delayed = gotarget("goroutine-leak", rate=1000, leak_after="4s")
    with client() as http:
        baseline = goroutine_count(http, delayed)
        time.sleep(1)
        assert goroutine_count(http, delayed) <= baseline + 2  # still inside -leak-after (2 s or more to go)
        capped_before = goroutine_count(http, capped)
        time.sleep(3.5)  # past -leak-after by at least half a second: 500 goroutines at 1000/s
        assert goroutine_count(http, delayed) >= baseline + 200
        assert goroutine_count(http, capped) == capped_before  # the cap was reached and held
        text = http.get(capped.pprof_url + "goroutine", params={"debug": "1"}).text
        assert re.search(r"^40 @[ 0-9a-fx]+\n#\t\S+\tmain\.blockForever", text, re.MULTILINE)


def test_heap_leak_grows_live_heap_in_retain_records(gotarget: GoTargetFactory) -> None:
    rate = 2 * MiB
    target = gotarget("heap-leak", rate=rate)
    with client() as http:
        time.sleep(0.5)
        before = heap_after_gc(http, target)
        time.sleep(3)
        after = heap_after_gc(http, target)
    grown = memstat(after, "HeapAlloc") - memstat(before, "HeapAlloc")
    assert 0.6 * 3 * rate <= grown <= 1.5 * 3.5 * rate
    assert memstat(after, "HeapObjects") > memstat(before, "HeapObjects") + 1000
    assert "main.retainRecords" in after


def test_cgo_leak_grows_rss_but_not_go_sys(gotarget: GoTargetFactory) -> None:
    rate = 4 * MiB
    target = gotarget("cgo-leak", rate=rate)
    with client() as http:
        time.sleep(0.5)
        rss_before = vm_rss_bytes(target.pid)
        sys_before = memstat(http.get(target.pprof_url + "heap", params={"debug": "1"}).text, "Sys")
        time.sleep(3)
        rss_after = vm_rss_bytes(target.pid)
        sys_after = memstat(http.get(target.pprof_url + "heap", params={"debug": "1"}).text, "Sys")
    assert rss_after - rss_before >= 0.6 * 3 * rate
    assert abs(sys_after - sys_before) < 2 * MiB  # C memory is invisible to the Go runtime


def test_finalizer_leak_parks_the_finalizer_goroutine_and_queues_the_rest(gotarget: GoTargetFactory) -> None:
    target = gotarget("finalizer-leak", rate=1000, metrics=True)
    with client() as http:
        time.sleep(1.5)
        http.get(
            target.pprof_url + "heap", params={"gc": "1"}
        ).raise_for_status()  # queue what is unreachable
        text = http.get(target.pprof_url + "goroutine", params={"debug": "1"}).text
        groups = text.split("\n\n")
        finalizer = [g for g in groups if "main.stuckFinalizer" in g]
        assert len(finalizer) == 1
        assert re.search(r"runtime\.(runfinq|runFinalizers)\+", finalizer[0])
        if go_minor() >= 26:
            metrics = http.get(target.url + "/metrics").text
            backlog = prom_value(metrics, "go_gc_finalizers_queued_finalizers_total") - prom_value(
                metrics, "go_gc_finalizers_executed_finalizers_total"
            )
            assert backlog >= 500


def test_healthy_bursts_drain_and_heap_stays_bounded(gotarget: GoTargetFactory) -> None:
    target = gotarget("healthy")
    counts: list[int] = []
    live_heaps: list[int] = []
    with client() as http:
        deadline = time.monotonic() + 8
        next_heap = time.monotonic() + 1
        while time.monotonic() < deadline:
            counts.append(goroutine_count(http, target))
            if time.monotonic() >= next_heap:
                live_heaps.append(memstat(heap_after_gc(http, target), "HeapAlloc"))
                next_heap += 1.5
            time.sleep(0.2)
    baseline = min(counts)
    assert max(counts) >= baseline + 100  # a burst was seen...
    assert (
        counts.index(max(counts)) < len(counts) - 1
        and min(counts[counts.index(max(counts)) :]) <= baseline + 3
    )
    assert min(live_heaps) >= 32 * MiB  # the start-up step is retained
    assert max(live_heaps) - min(live_heaps) < 10 * MiB  # ...and nothing else accumulates


def test_custom_prefix_serves_every_pprof_endpoint(gotarget: GoTargetFactory) -> None:
    target = gotarget("healthy", prefix="/internal/pp", startup_step=0)
    base = target.url + "/internal/pp/"
    with client() as http:
        assert "goroutine?debug=1" in http.get(base).text
        redirect = http.get(target.url + "/internal/pp")
        assert redirect.status_code == 301 and redirect.headers["location"] == "/internal/pp/"
        # What each named profile's debug=1 text starts with (allocs is written by the heap writer).
        headers = {
            "heap": "heap profile: ",
            "allocs": "heap profile: ",
            "goroutine": "goroutine profile: total ",
            "threadcreate": "threadcreate profile: total ",
            "block": "--- contention:",
            "mutex": "--- mutex:",
        }
        for name, header in headers.items():
            text = http.get(base + name, params={"debug": "1"})
            assert text.status_code == 200 and text.text.startswith(header), name
            proto = http.get(base + name)
            assert gzip.decompress(proto.content), name
        assert re.match(
            r"goroutine \d+ \[running\]:\n", http.get(base + "goroutine", params={"debug": "2"}).text
        )
        assert memstat(http.get(base + "heap", params={"debug": "1", "gc": "1"}).text, "NumForcedGC") >= 1
        delta = http.get(base + "heap", params={"seconds": "1"})
        assert delta.status_code == 200 and gzip.decompress(delta.content)
        assert http.get(base + "heap", params={"seconds": "1", "debug": "1"}).status_code == 400
        assert "gotarget" in http.get(base + "cmdline").text
        assert gzip.decompress(http.get(base + "profile", params={"seconds": "1"}).content)
        assert http.get(base + "trace", params={"seconds": "0.2"}).content
        assert http.get(base + "symbol").text.startswith("num_symbols:")
        assert http.get(base + "memstats").status_code == 404
        assert http.get(target.url + "/debug/pprof/heap").status_code == 404


def test_token_is_required_on_every_endpoint(gotarget: GoTargetFactory) -> None:
    target = gotarget("healthy", token="s3cret", metrics=True, expvar=True, startup_step=0)
    paths = ["/debug/pprof/", "/debug/pprof/heap?debug=1", "/metrics", "/debug/vars"]
    with client() as http:
        for path in paths:
            assert http.get(target.url + path).status_code == 401, path
            wrong = http.get(target.url + path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            right = http.get(target.url + path, headers={"Authorization": "Bearer s3cret"})
            assert right.status_code == 200, path


def test_tls_serves_https_with_the_given_certificate(
    gotarget: GoTargetFactory, tmp_path: pathlib.Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    target = gotarget("healthy", tls_cert=str(cert_file), tls_key=str(key_file), startup_step=0)
    assert target.url.startswith("https://")
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with client(verify=trusting) as https:
        assert "goroutine?debug=1" in https.get(target.pprof_url).text
    with client() as strict, pytest.raises(httpx.ConnectError):
        strict.get(target.pprof_url)  # not trusted without the test CA
    assert f"listening on {target.url}" in target.log_text()


def test_expvar_and_metrics_only_when_asked(gotarget: GoTargetFactory) -> None:
    plain = gotarget("healthy", startup_step=0)
    rich = gotarget("healthy", startup_step=0, expvar=True, metrics=True)
    with client() as http:
        assert http.get(plain.url + "/debug/vars").status_code == 404
        assert http.get(plain.url + "/metrics").status_code == 404
        memstats = json.loads(http.get(rich.url + "/debug/vars").text)["memstats"]
        assert memstats["Mallocs"] >= memstats["Frees"] > 0
        assert len(memstats["BySize"]) == 61
        response = http.get(rich.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = [
        "process_resident_memory_bytes",
        "go_goroutines",
        "go_threads",
        "go_memstats_sys_bytes",
        "go_memstats_heap_released_bytes",
        "go_memstats_heap_alloc_bytes",
    ]
    if go_minor() >= 26:
        names += [
            "go_gc_finalizers_queued_finalizers_total",
            "go_gc_finalizers_executed_finalizers_total",
            "go_gc_heap_live_bytes",
            "go_gc_heap_objects_objects",
        ]
    for name in names:
        kind = "counter" if name.endswith("_total") else "gauge"
        assert re.search(
            rf"^# HELP {name} \S.*\n# TYPE {name} {kind}\n{name} \d+$", response.text, re.MULTILINE
        )
    assert abs(prom_value(response.text, "process_resident_memory_bytes") - vm_rss_bytes(rich.pid)) < 8 * MiB


def test_restart_keeps_the_port_and_starts_from_zero(gotarget: GoTargetFactory) -> None:
    target = gotarget("goroutine-leak", rate=200)
    time.sleep(1)
    with client() as http:
        leaked = goroutine_count(http, target)
        old_pid, old_url = target.pid, target.url
        target.restart()
        assert target.url == old_url and target.pid != old_pid
        assert goroutine_count(http, target) < leaked - 100


def test_sigterm_exits_cleanly(gotarget: GoTargetFactory) -> None:
    target = gotarget("goroutine-leak,heap-leak,cgo-leak,finalizer-leak,healthy", rate=100, startup_step=0)
    target.stop()
    assert target.returncode == 0
    assert "gotarget: stopped" in target.log_text()


def test_build_is_cached_and_failures_carry_compiler_output(
    gotarget_binary: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build_gotarget() == gotarget_binary
    broken = tmp_path / "gotargets"
    shutil.copytree(pathlib.Path(__file__).parent / "gotargets", broken)
    (broken / "broken.go").write_text("package main\n\nvar _ = undefinedThing\n")
    monkeypatch.setenv("MEMORYWATCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(GoTargetBuildError) as failure:
        build_gotarget(broken)
    assert "undefinedThing" in failure.value.output
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no half-built binary left behind


def test_a_taken_port_fails_a_pinned_target_and_moves_an_unpinned_one(
    gotarget_binary: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        pinned = GoTarget(gotarget_binary, "healthy", port=taken, log_dir=tmp_path, startup_step=0)
        with pytest.raises(GoTargetStartError, match="address already in use"):
            pinned.start()
        assert not pinned.running
        unpinned = GoTarget(gotarget_binary, "healthy", log_dir=tmp_path, startup_step=0)
        unpinned.port = taken  # as if another process grabbed the free port before the target bound it
        with unpinned:
            assert unpinned.port != taken
            with client() as http:
                assert http.get(unpinned.pprof_url).status_code == 200


def go_minor() -> int:
    version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"go1\.(\d+)", version)
    return int(match.group(1)) if match else 0


def goroutine_ids(http: httpx.Client, target: GoTarget) -> set[int]:
    text = http.get(target.pprof_url + "goroutine", params={"debug": "2"}).text
    return {int(m) for m in re.findall(r"^goroutine (\d+) \[", text, re.MULTILINE)}


def test_log_requests_prints_every_request_line(gotarget: GoTargetFactory) -> None:
    target = gotarget("", log_requests=True)
    with client() as http:
        http.get(target.pprof_url + "heap", params={"debug": "1", "gc": "1"}).raise_for_status()
    time.sleep(0.2)
    assert "request GET /debug/pprof/heap?debug=1&gc=1" in target.log_text()


def test_churn_makes_the_target_collect_on_its_own(gotarget: GoTargetFactory) -> None:
    target = gotarget("", churn=32 * MiB)
    with client() as http:
        before = memstat(http.get(target.pprof_url + "heap", params={"debug": "1"}).text, "NumGC")
        time.sleep(2)
        text = http.get(target.pprof_url + "heap", params={"debug": "1"}).text
    assert memstat(text, "NumGC") >= before + 3, "garbage on the heap, not on a goroutine stack"
    assert memstat(text, "NumForcedGC") == 0


def test_load_ramp_goroutines_rise_and_turn_over(gotarget: GoTargetFactory) -> None:
    target = gotarget("load-ramp", max=600, ramp="6s")
    with client() as http:
        time.sleep(1)
        first_count, first_ids = goroutine_count(http, target), goroutine_ids(http, target)
        time.sleep(3)
        later_count, later_ids = goroutine_count(http, target), goroutine_ids(http, target)
    assert later_count >= first_count + 150, (first_count, later_count)
    kept = len(first_ids & later_ids)
    assert kept <= 0.2 * len(first_ids) + 20, "goroutines serving load are new ones, with new IDs"


def test_step_leak_retains_in_steps_and_cache_warmup_holds(gotarget: GoTargetFactory) -> None:
    steps = gotarget("step-leak", rate=2 * MiB, ramp="2s")
    cache = gotarget("cache-warmup", rate=8 * MiB, ramp="1s")
    with client() as http:
        time.sleep(0.5)
        live = [memstat(heap_after_gc(http, steps), "HeapAlloc")]
        for _ in range(3):
            time.sleep(1)
            live.append(memstat(heap_after_gc(http, steps), "HeapAlloc"))
        warm = memstat(heap_after_gc(http, cache), "HeapAlloc")
        time.sleep(3)
        held = memstat(heap_after_gc(http, cache), "HeapAlloc")
    assert live[-1] - live[0] >= 3 * MiB, live  # a 4 MiB step every 2 s
    assert abs(held - warm) <= 3 * MiB, (warm, held)  # warm after ~3 time constants: inserts = evictions
