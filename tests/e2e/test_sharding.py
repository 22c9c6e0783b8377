"""Sharding membership on the real local control plane: in-process members holding real Leases
(coordination.k8s.io/v1, control/membership.py) split real Pod objects between them with exactly one owner each;
a member that stops renewing is dropped and its pods are taken over within two lease durations; a member that
leaves cleanly is dropped at the others' next read; a new member takes a share. The Pods carry a scheduling gate:
ownership is decided from the Pod objects, no process has to run."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import pathlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from e2e_harness import Cluster
from kubernetes import client
from process_support import OperatorProcess, until_true
from test_actions import settled_pods

from memorywatch.control.membership import GROUP_LABEL, MemberLeases, lease_name
from memorywatch.control.sharding import owner, pod_key
from memorywatch.handlers import owned_pods
from memorywatch.k8s import Kube
from memorywatch.targets import PodInfo, pod_info

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
#: Long enough that a starved event loop on two loaded cores (the full suite) renews and reads well within it; the
#: bounds asserted below are the design's (two durations for a takeover, one for a clean leave), not slack.
LEASE_SECONDS = 10.0
PODS = 60


class Member:
    """One operator replica's membership, renewing in a task of its own (as `memorywatch run` spawns it)."""

    def __init__(self, cluster: Cluster, namespace: str, identity: str) -> None:
        self.leases = MemberLeases(
            Kube(cluster.api_client()), namespace, identity, group="e2e", lease_seconds=LEASE_SECONDS
        )
        self.task: asyncio.Task[None] = asyncio.create_task(self.leases.run(), name=f"member {identity}")

    @property
    def identity(self) -> str:
        return self.leases.identity

    def owned(self, pods: dict[str, list[PodInfo]], namespace: str) -> set[str]:
        return {p.name for p in owned_pods(self, namespace, pods)}

    @property
    def shard(self) -> MemberLeases:  # what handlers.owned_pods reads from kopf's memo
        return self.leases

    async def stop_renewing(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def pods(cluster: Cluster, namespace: str) -> dict[str, list[PodInfo]]:
    """PODS real Pod objects, as kopf's pod index holds them (namespace -> PodInfo)."""
    core = client.CoreV1Api(cluster.api_client())
    for i in range(PODS):
        core.create_namespaced_pod(namespace, {
            "metadata": {"name": f"app-{i}", "labels": {"app": "sharded"}},
            "spec": {"schedulingGates": [{"name": "memorywatch.dev/never"}],
                     "containers": [{"name": "app", "image": "none", "ports": [{"containerPort": 6060}]}]},
        })  # fmt: skip
    listed = core.list_namespaced_pod(namespace, label_selector="app=sharded")
    infos = [pod_info(client.ApiClient().sanitize_for_serialization(p)) for p in listed.items]
    assert len(infos) == PODS
    return {namespace: infos}


@pytest.fixture
async def members(cluster: Cluster, namespace: str) -> AsyncIterator[Callable[[str], Member]]:
    made: list[Member] = []

    def make(identity: str) -> Member:
        made.append(Member(cluster, namespace, identity))
        return made[-1]

    yield make
    for m in made:
        await m.stop_renewing()


async def settle(members: list[Member], expected: set[str], deadline: float, what: str) -> float:
    """Wait until every member's view is exactly `expected`; answers the time it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        if all(m.leases.view.members == expected for m in members):
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    views = {m.identity: sorted(m.leases.view.members) for m in members}
    raise AssertionError(f"{what}: views after {deadline:.0f} s: {views}, expected {sorted(expected)}")


def split(members: list[Member], pods: dict[str, list[PodInfo]], namespace: str) -> dict[str, set[str]]:
    """Who owns what; asserts that every pod has exactly one owner among `members`."""
    owned = {m.identity: m.owned(pods, namespace) for m in members}
    counts = collections.Counter(name for names in owned.values() for name in names)
    assert set(counts) == {p.name for p in pods[namespace]}, "every pod is owned"
    assert set(counts.values()) == {1}, (
        f"a pod with several owners: {[n for n, c in counts.items() if c > 1]}"
    )
    return owned


async def test_members_split_pods_and_take_over_a_silent_members_pods(
    cluster: Cluster, namespace: str, pods: dict[str, list[PodInfo]], members: Callable[[str], Member]
) -> None:
    a, b, c = members("replica-a"), members("replica-b"), members("replica-c")
    everyone = {"replica-a", "replica-b", "replica-c"}
    await settle([a, b, c], everyone, 4 * LEASE_SECONDS, "three members see each other")
    owned = split([a, b, c], pods, namespace)
    assert all(owned.values()), f"each member owns a share of {PODS} pods: {owned}"

    # The Leases are real: one per member, labelled with the group, renewed with the configured duration.
    coordination = client.CoordinationV1Api(cluster.api_client())
    leases = coordination.list_namespaced_lease(namespace, label_selector=f"{GROUP_LABEL}=e2e").items
    assert {x.metadata.name for x in leases} == {lease_name(i) for i in everyone}
    assert {x.spec.lease_duration_seconds for x in leases} == {int(LEASE_SECONDS)}

    # c stops renewing (a replica frozen or cut off): a and b drop it within two lease durations and take its pods.
    await c.stop_renewing()
    taken = await settle([a, b], {"replica-a", "replica-b"}, 2 * LEASE_SECONDS, "c is dropped")
    after = split([a, b], pods, namespace)
    assert after["replica-a"] >= owned["replica-a"] and after["replica-b"] >= owned["replica-b"], (
        "only c's pods move"
    )
    assert after["replica-a"] | after["replica-b"] >= owned["replica-c"]
    print(f"c's {len(owned['replica-c'])} pods taken over {taken:.1f} s after it stopped renewing")


async def test_clean_leave_and_join(
    cluster: Cluster, namespace: str, pods: dict[str, list[PodInfo]], members: Callable[[str], Member]
) -> None:
    a, b = members("replica-a"), members("replica-b")
    await settle([a, b], {"replica-a", "replica-b"}, 4 * LEASE_SECONDS, "two members see each other")
    before = split([a, b], pods, namespace)

    d = members("replica-d")
    await settle([a, b, d], {"replica-a", "replica-b", "replica-d"}, 4 * LEASE_SECONDS, "d joins")
    joined = split([a, b, d], pods, namespace)
    assert joined["replica-d"], "the new member takes a share"
    assert joined["replica-a"] <= before["replica-a"] and joined["replica-b"] <= before["replica-b"]

    # A clean shutdown deletes the Lease: the others drop d at their next read, not after a lease duration.
    await d.stop_renewing()
    await d.leases.leave()
    took = await settle([a, b], {"replica-a", "replica-b"}, LEASE_SECONDS, "d left cleanly")
    assert split([a, b], pods, namespace) == before, "ownership returns to exactly what it was"
    print(f"a clean leave was seen after {took:.1f} s")


async def test_membership_unreadable_keeps_the_last_view(
    cluster: Cluster, namespace: str, members: Callable[[str], Member]
) -> None:
    """A replica whose Lease calls fail (here: its Lease namespace is deleted under it) keeps its last view and
    counts the failures; it never falls back to owning nothing."""
    from prometheus_client import REGISTRY

    def errors() -> float:
        return REGISTRY.get_sample_value("memorywatch_shard_membership_errors_total") or 0.0

    a, b = members("replica-a"), members("replica-b")
    await settle([a, b], {"replica-a", "replica-b"}, 4 * LEASE_SECONDS, "two members")
    before = errors()
    lost = MemberLeases(
        Kube(cluster.api_client()),
        f"{namespace}-missing",
        "replica-a",
        group="e2e",
        lease_seconds=LEASE_SECONDS,
    )
    lost.view = a.leases.view
    assert await lost.refresh() is False
    assert lost.view.members == {"replica-a", "replica-b"}, "the last view is kept, not replaced by 'alone'"
    assert errors() == before + 1


async def test_long_dead_members_leases_are_deleted_recent_ones_kept(
    cluster: Cluster, namespace: str, members: Callable[[str], Member]
) -> None:
    """Each rollout leaves the Lease of every replaced pod; a live member deletes those dead for ten durations
    (at least 5 min) and leaves a Lease that only just expired (its holder may be coming back)."""
    coordination = client.CoordinationV1Api(cluster.api_client())
    now = datetime.datetime.now(datetime.UTC)
    for identity, age in (("ghost-old", 3600), ("ghost-recent", 30)):
        coordination.create_namespaced_lease(namespace, client.V1Lease(
            metadata=client.V1ObjectMeta(name=lease_name(identity), labels={GROUP_LABEL: "e2e"}),
            spec=client.V1LeaseSpec(holder_identity=identity, lease_duration_seconds=3,
                                    renew_time=now - datetime.timedelta(seconds=age)),
        ))  # fmt: skip
    a = members("replica-a")
    await settle([a], {"replica-a"}, 4 * LEASE_SECONDS, "the ghosts are not members")

    def names() -> set[str]:
        leases = coordination.list_namespaced_lease(namespace, label_selector=f"{GROUP_LABEL}=e2e").items
        return {x.metadata.name for x in leases}

    kept = {lease_name("replica-a"), lease_name("ghost-recent")}
    await until_true(lambda: names() == kept, 10, f"only {sorted(kept)} left")


# ---------------------------------------------------------------- two `memorywatch run` processes

PROCESS_LEASE_SECONDS = 10
#: The documented bound on a takeover: the Lease expires (one duration after the last renewal), the survivor
#: reads it (a third of a duration later), its controller reconciles (RECONCILE_SECONDS); below two durations.
TAKEOVER_BOUND = PROCESS_LEASE_SECONDS + PROCESS_LEASE_SECONDS / 3 + 5
REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "memorywatch.io_memorywatches.yaml"


async def test_two_operator_processes_share_the_pods_and_one_takes_over(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:  # fmt: skip
    """Two real `memorywatch run` processes with sharding on (kopf standalone) follow, between them, each of the
    watched pods exactly once, split as rendezvous hashing says; killed without a clean shutdown, one replica's
    pods are followed by the other within the documented bound (below two lease durations)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=memorywatch-tests",
                    "-f", str(CRD_FILE))  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/memorywatches.memorywatch.io", "--timeout=60s"
    )
    deploy("shared", pprofserver, replicas=8)
    names = set(settled_pods(core, namespace, "shared", 8, apps))
    custom = client.CustomObjectsApi(cluster.api_client())
    body = {"apiVersion": "memorywatch.io/v1alpha1", "kind": "MemoryWatch", "metadata": {"name": "shared"},
            "spec": {"selector": {"matchLabels": {"app": "shared"}}, "endpoint": {"port": 6060},
                     "interval": "2s"}}  # fmt: skip
    custom.create_namespaced_custom_object("memorywatch.io", "v1alpha1", namespace, "memorywatches", body)
    # Pod names are random: pick the replica names so that both own a share (a 1-in-128 chance otherwise).
    pair = next(
        (f"replica-{x}", f"replica-{y}")
        for x, y in ("ab", "cd", "ef", "gh", "ij")
        if len({owner([f"replica-{x}", f"replica-{y}"], pod_key(namespace, n)) for n in names}) == 2
    )
    sharding = ("--shard-members-lease-duration", str(PROCESS_LEASE_SECONDS), "--shard-group", "e2e")
    procs = [OperatorProcess(cluster, namespace, i, tmp_path, extra=sharding) for i in pair]
    a, b = procs
    try:
        expected = {p.identity: 0 for p in procs}
        for name in names:
            expected[str(owner(sorted(expected), pod_key(namespace, name)))] += 1
        assert all(expected.values()), expected

        def split_as_hashed() -> bool:
            got = {p.identity: p.metric("memorywatch_targets") for p in procs}
            return got == {k: float(v) for k, v in expected.items()} and all(
                (p.metric("memorywatch_shard_members") or 0) == 2 for p in procs
            )

        await until_true(split_as_hashed, 120, f"the processes to follow {expected} pods")

        # Each scrapes what it owns: successful scrapes grow in both processes.
        def scrapes() -> dict[str, float]:
            return {p.identity: p.metric("memorywatch_scrapes_total", result="ok") or 0.0 for p in procs}

        first = scrapes()
        await asyncio.sleep(6)
        later = scrapes()
        assert all(later[i] > first[i] for i in pair), (first, later, expected)

        b.stop(signal.SIGKILL)  # no clean shutdown: b's Lease stays until it expires
        took = await until_true(
            lambda: a.metric("memorywatch_targets") == len(names), TAKEOVER_BOUND + 5, "a to follow every pod"
        )
        print(
            f"{b.identity}'s {expected[b.identity]} pods followed by {a.identity} {took:.1f} s after the kill"
        )
        assert took <= TAKEOVER_BOUND, f"took {took:.1f} s, the documented bound is {TAKEOVER_BOUND:.1f} s"
        assert took <= 2 * PROCESS_LEASE_SECONDS
    finally:
        # The MemoryWatch carries the operator's finalizer: remove it before the processes stop, or the namespace
        # could not be deleted.
        with contextlib.suppress(client.ApiException):
            custom.patch_namespaced_custom_object("memorywatch.io", "v1alpha1", namespace, "memorywatches",
                                                  "shared", {"metadata": {"finalizers": None}})  # fmt: skip
            custom.delete_namespaced_custom_object(
                "memorywatch.io", "v1alpha1", namespace, "memorywatches", "shared"
            )
        for p in procs:
            p.stop()


ALWAYS = [{"name": "always", "kind": "Threshold", "expression": "goroutines >= 0", "for": "0"}]
CAPTURE_CRD_FILE = REPO / "crds" / "memorywatch.io_memorycaptures.yaml"


async def test_a_survivor_does_not_capture_again_and_status_counts_each_pod_once(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:  # fmt: skip
    """Two real `memorywatch run` processes with sharding on, a rule that fires on every sample and a 10 min
    capture cooldown: each pod is captured once, by its owner. While both run, the MemoryWatch's summary counts
    every pod once and each process has its share. One is killed (SIGKILL) after its captures: the survivor
    takes its pods over and, having read their MemoryCaptures first, captures none of them again; the summary
    then holds the survivor's share only."""
    for crd in (CRD_FILE, CAPTURE_CRD_FILE):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=memorywatch-tests",
                        "-f", str(crd))  # fmt: skip
    for crd in ("memorywatches", "memorycaptures"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}.memorywatch.io", "--timeout=60s")
    deploy("leaky", pprofserver, replicas=4)
    names = set(settled_pods(core, namespace, "leaky", 4, apps))
    custom = client.CustomObjectsApi(cluster.api_client())
    body = {"apiVersion": "memorywatch.io/v1alpha1", "kind": "MemoryWatch", "metadata": {"name": "leaky"},
            "spec": {"selector": {"matchLabels": {"app": "leaky"}}, "endpoint": {"port": 6060, "metricsPath": ""},
                     "interval": "1s", "rules": ALWAYS,
                     "capture": {"cooldown": "10m", "profiles": ["heap"]}}}  # fmt: skip
    custom.create_namespaced_custom_object("memorywatch.io", "v1alpha1", namespace, "memorywatches", body)
    pair = next(
        (f"replica-{x}", f"replica-{y}")
        for x, y in ("ab", "cd", "ef", "gh", "ij", "kl", "mn")
        if len({owner([f"replica-{x}", f"replica-{y}"], pod_key(namespace, n)) for n in names}) == 2
    )
    sharding = ("--shard-members-lease-duration", str(PROCESS_LEASE_SECONDS), "--shard-group", "e2e")
    procs = [OperatorProcess(cluster, namespace, i, tmp_path, extra=sharding) for i in pair]
    a, b = procs
    mine = {p.identity: {n for n in names if owner(pair, pod_key(namespace, n)) == p.identity} for p in procs}

    def captures() -> collections.Counter[str]:
        listed = custom.list_namespaced_custom_object(
            "memorywatch.io", "v1alpha1", namespace, "memorycaptures"
        )
        return collections.Counter(str(c["spec"]["pod"]) for c in listed["items"])

    def status() -> dict[str, Any]:
        mw = custom.get_namespaced_custom_object(
            "memorywatch.io", "v1alpha1", namespace, "memorywatches", "leaky"
        )
        return dict(mw.get("status") or {})

    try:
        await _test_survivor(a, b, names, mine, captures, status, pair)
    except AssertionError as e:
        follows = {
            p.identity: p.metric("memorywatch_targets") if p.proc.poll() is None else None for p in procs
        }
        raise AssertionError(f"{e}\nfollowed: {follows}\ncaptures: {captures()}\nstatus: {status()}") from e
    finally:
        for p in procs:  # first, so that no finalizer is added back
            p.stop()
        with contextlib.suppress(
            client.ApiException
        ):  # the MemoryCaptures carry the operator's finalizer too
            for c in custom.list_namespaced_custom_object(
                "memorywatch.io", "v1alpha1", namespace, "memorycaptures"
            )["items"]:
                custom.patch_namespaced_custom_object("memorywatch.io", "v1alpha1", namespace, "memorycaptures",
                                                      c["metadata"]["name"], {"metadata": {"finalizers": None}})  # fmt: skip
        with contextlib.suppress(client.ApiException):
            custom.patch_namespaced_custom_object("memorywatch.io", "v1alpha1", namespace, "memorywatches",
                                                  "leaky", {"metadata": {"finalizers": None}})  # fmt: skip
            custom.delete_namespaced_custom_object(
                "memorywatch.io", "v1alpha1", namespace, "memorywatches", "leaky"
            )


async def _test_survivor(
    a: OperatorProcess, b: OperatorProcess, names: set[str], mine: dict[str, set[str]],
    captures: Callable[[], collections.Counter[str]], status: Callable[[], dict[str, Any]], pair: tuple[str, str],
) -> None:  # fmt: skip
    await until_true(lambda: set(captures()) == names, 180, "every pod to be captured")
    assert all(n == 1 for n in captures().values()), captures()

    def consistent() -> bool:
        s = status()
        shards = s.get("shards") or {}
        return (
            set(shards) == set(pair)
            and {m: shards[m].get("targets") for m in pair} == {m: len(mine[m]) for m in pair}
            and s.get("targets") == len(names)
            and {c.get("pod") for c in s.get("captures") or []} == names
        )

    await until_true(consistent, 60, f"the summary to count {sorted(names)} once, with both shares")
    for _ in range(5):  # and it stays so while both run (each writes only its own share)
        await asyncio.sleep(1)
        assert consistent(), status()

    before = captures()
    b.stop(signal.SIGKILL)
    took = await until_true(
        lambda: a.metric("memorywatch_targets") == len(names), TAKEOVER_BOUND + 10, "a to follow every pod"
    )
    print(
        f"{b.identity}'s pods {sorted(mine[b.identity])} followed by {a.identity} {took:.1f} s after the kill"
    )
    await asyncio.sleep(10)  # ten samples of each taken-over pod, the rule firing on every one
    assert captures() == before, f"a pod was captured again within its cooldown: {before} -> {captures()}"
    a.alive()

    def alone() -> bool:
        s = status()
        return set(s.get("shards") or {}) == {a.identity} and s.get("targets") == len(names)

    await until_true(alone, 30, f"the summary to hold {a.identity}'s share only")
