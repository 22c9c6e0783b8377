"""A target keeps its series, baseline and cooldowns across what should not cost them: spec edits that leave its
rules, interval and endpoint alone (dryRun, action, capture settings), an edit of another rule, credentials
that change; and starts again when its process does (restartCount, pod UID)."""

from __future__ import annotations

import pathlib

from tests.unit.control.fakes import FakeClock, FakeKube, SyntheticScraper, pod
from tests.unit.control.harness import RULES, Running, body, controller, until

from memorywatch.control.watch import WatchController


def growth(c: WatchController, rule: str, target: str = "shop-1") -> float | None:
    states = c.watcher.rule_states(target) if c.watcher is not None else {}
    return states[rule].growth if rule in states else None


def samples_of(scraper: SyntheticScraper, target: str = "shop-1") -> int:
    return sum(1 for _, s in scraper.samples if s.target == target)


async def test_dry_run_and_another_rules_edit_keep_the_series(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    scraper = SyntheticScraper(clock, growth=50)
    c = controller(tmp_path, kube, clock, scraper)
    async with Running(c, body(1, action={"type": "EvictPod", "dryRun": True})) as r:
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend on both rules")
        watcher, before = c.watcher, growth(c, "goroutines-a")
        assert before is not None and growth(c, "goroutines-b") is not None

        edited = [RULES[0], {**RULES[1], "minGrowth": "200000"}]
        r.body = body(2, action={"type": "EvictPod", "dryRun": False}, rules=edited)
        await c.reconcile(r.body, r.pods)

        assert c.watcher is watcher, "the engine was not restarted"
        assert c.spec is not None and c.spec.action.dry_run is False, "dryRun taken in place"
        kept = growth(c, "goroutines-a")
        assert kept is not None and kept >= before, "the unchanged rule kept its series"
        assert growth(c, "goroutines-b") is None, "the edited rule starts a new series"


async def test_capture_settings_are_taken_without_restarting_the_engine(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    scraper = SyntheticScraper(clock, growth=50)
    c = controller(tmp_path, kube, clock, scraper)
    async with Running(c, body(1)) as r:
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend")
        watcher = c.watcher
        r.body = body(2, capture={"profiles": ["heap"], "cooldown": "5m", "cpuSeconds": 5})
        await c.reconcile(r.body, r.pods)
        assert c.watcher is watcher
        assert watcher is not None and watcher.settings.profiles == ("heap",)
        assert watcher.settings.cooldown_seconds == 300
        assert growth(c, "goroutines-a") is not None


async def test_a_new_interval_restarts_the_engine(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock, growth=50))
    async with Running(c, body(1)) as r:
        await until(lambda: c.watcher is not None and c.watcher.target_keys(), "a target")
        watcher = c.watcher
        r.body = body(2, interval="2s")
        await c.reconcile(r.body, r.pods)
        assert c.watcher is not watcher and c.watcher is not None
        assert c.watcher.settings.interval_seconds == 2


async def test_a_changed_token_is_swapped_in_place(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    kube.secrets[("ns", "tok")] = {"token": "first"}
    scraper = SyntheticScraper(clock, growth=50)
    c = controller(tmp_path, kube, clock, scraper)
    endpoint = {
        "port": 6060,
        "bearerTokenSecretRef": {"name": "tok", "key": "token"},
        "allowInsecureBearerToken": True,
    }
    long_window = [{**rule, "window": "30m"} for rule in RULES]  # wider than the Secret cache's TTL
    async with Running(c, body(1, endpoint=endpoint, rules=long_window)) as r:
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend")
        kube.secrets[("ns", "tok")] = {"token": "second"}
        clock.advance(c.secrets.ttl_seconds + 1)
        await c.reconcile(r.body, r.pods)
        n = len(scraper.samples)
        await until(lambda: len(scraper.samples) > n, "the next sample")
        assert scraper.samples[-1][0].bearer_token == "second", "the next scrape uses the new token"
        assert growth(c, "goroutines-a") is not None, "series kept"


async def test_one_secret_read_per_ttl_not_per_pod_and_reconcile(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    kube.secrets[("ns", "tok")] = {"token": "t"}
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock, step_seconds=0))
    endpoint = {
        "port": 6060,
        "bearerTokenSecretRef": {"name": "tok", "key": "token"},
        "allowInsecureBearerToken": True,
    }
    pods = [pod(f"shop-{i}") for i in range(5)]
    b = body(1, endpoint=endpoint)
    for _ in range(10):
        await c.reconcile(b, pods)
    assert kube.secret_reads == 1
    await c.reconcile(b, pods)
    clock.advance(c.secrets.ttl_seconds)
    await c.reconcile(b, pods)
    assert kube.secret_reads == 2
    await c._stop_watcher()


async def test_a_container_restart_starts_the_series_again_but_keeps_cooldowns(
    tmp_path: pathlib.Path,
) -> None:
    clock, kube = FakeClock(), FakeKube()
    scraper = SyntheticScraper(clock, growth=50)
    c = controller(tmp_path, kube, clock, scraper)
    async with Running(c, body(1)) as r:
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend")
        assert c.watcher is not None
        c.cooldowns[("shop-1", "goroutines-a", "Capture")] = clock() + 3600
        c.watcher.restart_target("shop-1", "warm-up for the test")  # seeds nothing; the check below matters
        await until(lambda: growth(c, "goroutines-a") is not None, "a trend again")

        r.pods = [pod("shop-1", restarts=1)]
        await c.reconcile(r.body, r.pods)
        assert growth(c, "goroutines-a") is None, "a new process: the series starts again"
        await c.write_status()
        cooldowns = {(x["pod"], x["rule"]) for x in kube.status["cooldowns"]}
        assert ("shop-1", "goroutines-a") in cooldowns

        await until(lambda: growth(c, "goroutines-a") is not None, "a trend again")
        r.pods = [pod("shop-1", restarts=1, uid="another-uid")]
        await c.reconcile(r.body, r.pods)
        assert growth(c, "goroutines-a") is None, "a new pod UID under the same name: a new process"


async def test_a_pod_that_leaves_is_dropped(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock))
    b = body(1)
    await c.reconcile(b, [pod("shop-1"), pod("shop-2")])
    assert c.watcher is not None and sorted(c.watcher.target_keys()) == ["shop-1", "shop-2"]
    await c.reconcile(b, [pod("shop-2"), pod("other", app="other")])
    assert c.watcher.target_keys() == ["shop-2"]
    assert kube.status["targets"] == 1
    await c._stop_watcher()
