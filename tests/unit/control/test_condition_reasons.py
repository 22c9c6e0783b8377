"""Conditions name the cause a person can act on: a Secret the namespace has not granted access to shows as
TargetsResolved=False reason SecretAccessNotGranted (with the command that grants it); a capture refused by a
quota of the operator's volume as StoreAvailable=False reason CaptureQuotaExceeded (naming the quota)."""

from __future__ import annotations

import pathlib
from typing import Any

from tests.unit.control.fakes import FakeClock, FakeKube, SyntheticScraper, no_close, pod, refuse_forward
from tests.unit.control.harness import Running, body, controller, until

from memorywatch.api.spec import WatchSpec, parse_spec
from memorywatch.control.resolve import TargetResolver
from memorywatch.control.secrets import SecretCache
from memorywatch.control.status import WatchFacts, derive_conditions, targets_resolved
from memorywatch.control.stores import StoreState
from memorywatch.k8s import ForbiddenError
from memorywatch.scrape import ScrapeError, TargetConfig
from memorywatch.store import CaptureStore
from memorywatch.store.quota import QuotaFilesystemStore
from memorywatch.store.retention import Limits, WatchLimits

TOKEN = {"port": 6060, "bearerTokenSecretRef": {"name": "tok"}, "allowInsecureBearerToken": True}
ALWAYS = [{"name": "always", "kind": "Threshold", "expression": "goroutines >= 0", "for": "0"}]


class ProfilelessScraper(SyntheticScraper):
    """Serves samples; a profile download fails, so a capture is kept with that error (and has a size)."""

    async def fetch_profile_info(self, target: TargetConfig, name: str, **_: Any) -> Any:
        raise ScrapeError(target.display_name, name, "not served by the synthetic scraper")


class NoConsentKube(FakeKube):
    """The API server refusing every Secret read with 403, as RBAC does in a namespace without consent."""

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        raise ForbiddenError(
            f'get Secret {namespace}/{name}: 403 Forbidden: secrets "{name}" is forbidden', 403
        )


async def test_a_forbidden_secret_is_secret_access_not_granted_with_the_command() -> None:
    clock = FakeClock()
    r = TargetResolver("shop", SecretCache(NoConsentKube(), clock), refuse_forward, no_close)
    res = await r.resolve(
        parse_spec({"selector": {"matchLabels": {"app": "shop"}}, "endpoint": TOKEN}), pod("p")
    )
    assert (res.target, res.transient, res.cause) == (None, False, "SecretAccessNotGranted")
    assert res.problem is not None and "kubectl -n shop create role" in res.problem


async def test_the_watch_says_secret_access_not_granted(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), NoConsentKube()
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock))
    async with Running(c, body(1, endpoint=TOKEN)):
        cond = await until(lambda: kube.condition("TargetsResolved").get("status") == "False"
                           and kube.condition("TargetsResolved"), "TargetsResolved=False")  # fmt: skip
        assert cond["reason"] == "SecretAccessNotGranted"
        assert (
            "spec.endpoint.bearerTokenSecretRef" in cond["message"]
            and "create rolebinding" in cond["message"]
        )
        assert kube.condition("Ready")["reason"] == "SecretAccessNotGranted"


def test_other_resolution_problems_stay_targets_unresolved() -> None:
    assert targets_resolved("ns", "app=x", 1, 1, ["p: no port"], {"NoSuchPort"})[1] == "TargetsUnresolved"
    mixed = targets_resolved(
        "ns", "app=x", 2, 2, ["a: no port", "b: consent"], {"NoSuchPort", "SecretAccessNotGranted"}
    )
    assert mixed == ("False", "SecretAccessNotGranted", "a: no port; b: consent")


def test_store_state_keeps_the_reason_of_the_last_failure() -> None:
    state = StoreState()
    state.capture_failed("the capture volume's quota is reached: ...", "QuotaExceeded")
    assert state.reason == "CaptureQuotaExceeded"
    state.capture_failed("cannot write heap.pb.gz: No space left on device", "StoreUnavailable")
    assert state.reason == "StoreUnavailable"
    state.capture_failed("quota again", "QuotaExceeded")
    state.capture_succeeded()
    assert (state.error, state.reason) == (None, "StoreUnavailable")
    facts = WatchFacts(1, targets=1, store_error="quota", store_reason="CaptureQuotaExceeded")
    cond = derive_conditions({}, facts, 0.0)["StoreAvailable"]
    assert (cond.status, cond.reason) == ("False", "CaptureQuotaExceeded")


async def test_a_full_watch_quota_is_capture_quota_exceeded_naming_the_quota(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    c = controller(tmp_path, kube, clock, ProfilelessScraper(clock, step_seconds=2))
    volume = QuotaFilesystemStore(tmp_path / "volume", Limits(), clock=clock)

    async def quota_store(spec: WatchSpec, namespace: str) -> CaptureStore:
        return volume.for_watch(WatchLimits(max_bytes=1))

    c.make_store = quota_store
    async with Running(c, body(1, rules=ALWAYS, capture={"cooldown": "1s", "profiles": ["heap"]})):
        cond = await until(lambda: kube.condition("StoreAvailable").get("status") == "False"
                           and kube.condition("StoreAvailable"), "StoreAvailable=False")  # fmt: skip
        assert cond["reason"] == "CaptureQuotaExceeded"
        assert "capture.retention.maxBytes" in cond["message"], cond
        assert any(e.reason == "CaptureFailed" and "quota" in e.message for e in kube.events)
