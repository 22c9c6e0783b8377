"""The scale test's harness (issue 9): thousands of kwok pods that run no process, their pod IPs served by the Go
fleet simulator (tests/fleetsim, which counts the scrapes each target gets), several MemoryWatches over them, and
N real `memorywatch run` processes with sharding on, as the chart's own ServiceAccount. Used by
tests/e2e/test_scale.py (a few hundred pods) and hack/scale-test (5,000).

How a pod is told to be scraped by exactly one replica: every replica scrapes from 127.0.0.1, so the simulator
cannot tell them apart by address. Instead (a) each replica's own `memorywatch_targets` must equal the number of
pods rendezvous hashing gives it (`owner`), summing to the pods watched, and (b) the simulator's count of
heap?debug=1 requests per pod over a window of W seconds must be about W / interval: a pod followed by two
replicas gets twice that, one followed by none gets 0. `classify` puts each pod in one of those buckets.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import pathlib
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from e2e_harness import CACHE, Cluster, run_hack, wait_until
from kubernetes import client
from operator_support import new_namespace
from process_support import OperatorProcess, chart_identity
from prometheus_client.parser import text_string_to_metric_families

from bench.fleet import Fleet, build_fleetsim
from memorywatch.control.sharding import owner, pod_key

REPO = pathlib.Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
GROUP, VERSION = "memorywatch.io", "v1alpha1"
#: The pod runner leaves pods with this annotation alone (hack/localcluster/runner.py): no process.
NO_PROCESS = "localcluster.memorywatch.dev/no-process"
KIND_LABEL = "scale.memorywatch.dev/kind"
PORT = 6060
#: Each node's podCIDR is a /24 (254 addresses): leave room for a few pods of other tests.
PODS_PER_NODE = 240
SCALE_NODE = "mw-scale-node-{i}"
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    pods: int = 300
    replicas: int = 3
    watches: int = 2
    interval_seconds: int = 3
    lease_seconds: int = 15
    #: Every `leak_every`-th pod leaks (fleetsim kind heap-leak); the others are healthy.
    leak_every: int = 10
    leak_bytes_per_second: int = 2 * MIB  # real seconds
    #: Simulated seconds per real second. The simulated processes complete a GC every 20 simulated seconds, and
    #: HeapGrowth judges a window only once it holds 6 GC cycles: at 10x a 36 s window holds 18.
    speed: float = 10.0
    window_seconds: int = 36
    min_growth: str = "16Mi"
    release: str = "scale"

    def kind(self, i: int) -> str:
        """Pod i is watched by MemoryWatch i % watches; every leak_every-th pod of each watch leaks."""
        return "heap-leak" if (i // self.watches) % self.leak_every == self.leak_every - 1 else "healthy"


@dataclasses.dataclass(frozen=True)
class Coverage:
    """Heap scrapes per pod over one window, against `expected` = window / interval."""

    seconds: float
    expected: float
    zero: tuple[str, ...]  # not scraped at all
    low: tuple[str, ...]  # scraped, but fewer than half the expected times
    at_interval: int  # between half and 1.5 times the expected count: one replica at the interval
    high: tuple[str, ...]  # more than 1.5 times: more than one replica (or a runaway loop)
    per_pod: Mapping[str, int]

    def line(self) -> str:
        n = len(self.per_pod)
        return (f"{n} pods over {self.seconds:.0f} s (expected {self.expected:.1f} scrapes each): "
                f"{self.at_interval} at the interval, {len(self.zero)} not scraped, {len(self.low)} below half, "
                f"{len(self.high)} above 1.5x (more than one replica); "
                f"min/median/max {min(self.per_pod.values(), default=0)}/{median(self.per_pod.values())}/"
                f"{max(self.per_pod.values(), default=0)}")  # fmt: skip


def median(values: Iterable[int]) -> float:
    xs = sorted(values)
    if not xs:
        return 0.0
    mid = len(xs) // 2
    return float(xs[mid]) if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def classify(
    before: Mapping[str, int], after: Mapping[str, int], seconds: float, interval: float
) -> Coverage:
    """Pure: each pod's scrapes between two snapshots (pod -> heap count), bucketed against seconds / interval."""
    expected = seconds / interval
    per_pod = {p: after.get(p, 0) - before.get(p, 0) for p in after}
    zero = tuple(sorted(p for p, n in per_pod.items() if n <= 0))
    low = tuple(sorted(p for p, n in per_pod.items() if 0 < n < expected / 2))
    high = tuple(sorted(p for p, n in per_pod.items() if n > expected * 1.5))
    return Coverage(
        seconds, expected, zero, low, len(per_pod) - len(zero) - len(low) - len(high), high, per_pod
    )


def request_counts(text: str) -> dict[str, float]:
    """Pure: from the API server's /metrics, the requests it served (apiserver_request_total, every client; the
    local control plane runs without priority and fairness, so there is no per-client split): `total`, and
    `<verb> <resource>` for each pair."""
    out: dict[str, float] = {"total": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "apiserver_request_total":
                out["total"] += s.value
                key = f"{s.labels.get('verb', '')} {s.labels.get('resource', '')}"
                out[key] = out.get(key, 0.0) + s.value
    return out


def start_cluster() -> Cluster:
    """`hack/local-cluster up` (as the e2e conftest does) and a Cluster for it; for hack/scale-test."""
    up = run_hack("up", timeout=3600)
    if up.returncode != 0:
        raise RuntimeError(f"hack/local-cluster up failed:\n{up.stderr[-4000:]}")
    info = json.loads(run_hack("status", "--json", timeout=60).stdout)
    s3env = dict(
        line.split("=", 1)
        for line in pathlib.Path(info["s3_env_file"]).read_text().splitlines()
        if "=" in line
    )
    return Cluster(kubeconfig=pathlib.Path(up.stdout.strip().splitlines()[-1]), dir=pathlib.Path(info["dir"]),
                   info=info, s3_endpoint=s3env["MW_S3_ENDPOINT"], s3_access_key=s3env["AWS_ACCESS_KEY_ID"],
                   s3_secret_key=s3env["AWS_SECRET_ACCESS_KEY"],
                   kubectl_path=CACHE / "bin" / "kubectl")  # fmt: skip


class ScaleRun:
    """One scale scenario in `namespace` (which the caller creates and deletes). Call `setup()`, then the steps;
    `close()` stops the operators and the fleet and removes what setup created outside the namespace."""

    def __init__(self, cluster: Cluster, namespace: str, cfg: ScaleConfig, work: pathlib.Path,
                 log: Callable[[str], None] = print) -> None:  # fmt: skip
        self.cluster, self.namespace, self.cfg, self.work, self.log = cluster, namespace, cfg, work, log
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.fleet: Fleet | None = None
        self.operators: list[OperatorProcess] = []
        self.op_namespace = ""
        self.rendered = ""
        self.extra_nodes: list[str] = []
        self.pod_of: dict[str, str] = {}  # "ip:port" -> pod name
        self.kind_of: dict[str, str] = {}  # pod name -> fleetsim kind
        self.identities = [f"replica-{i}" for i in range(cfg.replicas)]
        # A release of its own per run: the chart's ClusterRole and ClusterRoleBinding are named after it, and two
        # runs on one cluster must not rebind (or, when one ends, delete) each other's.
        self.release = f"{cfg.release}-{uuid.uuid4().hex[:5]}"
        self.group = f"{self.release}-memorywatch"

    # ----- setup -----
    def setup(self) -> None:
        t0 = time.monotonic()
        for crd in ("memorywatch.io_memorywatches.yaml", "memorywatch.io_memorycaptures.yaml"):
            self.cluster.kubectl("apply", "--server-side", "--force-conflicts",
                                 "--field-manager=memorywatch-tests", "-f", str(CRDS / crd))  # fmt: skip
        for crd in ("memorywatches", "memorycaptures"):
            self.cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}.memorywatch.io",
                                 "--timeout=60s")  # fmt: skip
        nodes = self._nodes()
        self._create_pods(nodes)
        ips = self._wait_for_ips()
        self.log(f"{len(ips)} pods with IPs on {len(nodes)} nodes in {time.monotonic() - t0:.0f} s")
        lines = [f"{ip}:{PORT} {self.kind_of[name]}" for name, ip in sorted(ips.items())]
        self.pod_of = {f"{ip}:{PORT}": name for name, ip in ips.items()}
        self.fleet = Fleet(build_fleetsim(), addresses=lines, metrics_fraction=0.0,
                           speed=self.cfg.speed,
                           extra={"heap-leak-rate": self.cfg.leak_bytes_per_second / self.cfg.speed, "records": 30}).start()  # fmt: skip
        for w in range(self.cfg.watches):
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "memorywatches",
                                                        self._watch(w))  # fmt: skip

    def _nodes(self) -> list[str]:
        """Enough kwok nodes for the pods: the cluster's, plus mw-scale-node-<i> (podCIDR <net>.<i>.0/24) until
        the free slots (PODS_PER_NODE per node, less the pods already there) hold every pod."""
        names = sorted(n.metadata.name for n in self.core.list_node().items)
        used: dict[str, int] = {}
        for p in self.core.list_pod_for_all_namespaces().items:
            used[p.spec.node_name or ""] = used.get(p.spec.node_name or "", 0) + 1
        free = sum(max(0, PODS_PER_NODE - used.get(n, 0)) for n in names)
        net = self.cluster.info["pod_network"].rsplit(".", 2)[0]  # "127.48.0.0/16" -> "127.48"
        i = len(names)
        while free < self.cfg.pods:
            while SCALE_NODE.format(i=i) in names:
                i += 1
            if i > 250:
                raise RuntimeError(f"{self.cfg.pods} pods need more than 250 nodes' /24s")
            name = SCALE_NODE.format(i=i)
            try:
                self._create_node(name, f"{net}.{i}.0/24")
            except client.ApiException as e:
                if e.status != 409:  # another run's node of that name: try the next
                    raise
                i += 1
                continue
            self.extra_nodes.append(name)
            names.append(name)
            free += PODS_PER_NODE
        return names

    def _create_node(self, name: str, cidr: str) -> None:
        self.core.create_node({
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "type": "kwok",
                                                      "kubernetes.io/os": "linux"},
                             "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            })  # fmt: skip

    def _create_pods(self, nodes: Sequence[str]) -> None:
        used: dict[str, int] = {}
        for p in self.core.list_pod_for_all_namespaces().items:
            used[p.spec.node_name or ""] = used.get(p.spec.node_name or "", 0) + 1
        slots = [n for n in nodes for _ in range(max(0, PODS_PER_NODE - used.get(n, 0)))]
        if len(slots) < self.cfg.pods:
            raise RuntimeError(f"room for {len(slots)} pods on {len(nodes)} nodes, {self.cfg.pods} wanted")

        def create(i: int) -> None:
            name = f"p-{i:05d}"
            self.kind_of[name] = self.cfg.kind(i)
            body = {
                "metadata": {"name": name, "annotations": {NO_PROCESS: "true"},
                             "labels": {"app": f"w{i % self.cfg.watches}", KIND_LABEL: self.cfg.kind(i)}},
                "spec": {"nodeName": slots[i], "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "app", "image": "fleetsim.invalid/target:none",
                                         "ports": [{"containerPort": PORT}]}]},
            }  # fmt: skip
            for attempt in range(5):
                try:
                    self.core.create_namespaced_pod(self.namespace, body)
                    return
                except client.ApiException as e:
                    if e.status == 409:
                        return
                    if attempt == 4 or e.status not in (429, 500, 503, 504):
                        raise
                    time.sleep(1 + attempt)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(self.cfg.pods)))

    def _wait_for_ips(self) -> dict[str, str]:
        got: dict[str, str] = {}

        def all_have_ips() -> bool:
            got.clear()
            for p in self.core.list_namespaced_pod(self.namespace).items:
                if p.status.pod_ip and p.status.phase == "Running":
                    got[p.metadata.name] = p.status.pod_ip
            return len(got) == self.cfg.pods

        wait_until(
            all_have_ips, 120 + self.cfg.pods / 10, f"{self.cfg.pods} pods Running with an IP", interval=2
        )
        return dict(got)

    def _watch(self, w: int) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "MemoryWatch", "metadata": {"name": f"w{w}"},
            "spec": {"selector": {"matchLabels": {"app": f"w{w}"}},
                     "endpoint": {"port": PORT, "metricsPath": ""},
                     "interval": f"{self.cfg.interval_seconds}s",
                     "rules": [{"name": "heap-growth", "kind": "HeapGrowth",
                                "window": f"{self.cfg.window_seconds}s", "minGrowth": self.cfg.min_growth}],
                     "capture": {"cooldown": "1h", "profiles": ["heap"]}},
        }  # fmt: skip

    def start_operators(self) -> None:
        core = self.core
        self.op_namespace = new_namespace(core, "mw-scale")
        kubeconfig, self.rendered = chart_identity(
            self.cluster, self.release, self.op_namespace, self.work / "kubeconfig",
            f"replicaCount={self.cfg.replicas}", "sharding.enabled=true",
        )  # fmt: skip
        sharding = (
            "--shard-members-lease-duration",
            str(self.cfg.lease_seconds),
            "--shard-group",
            self.group,
        )
        self.operators = [OperatorProcess(self.cluster, self.namespace, i, self.work, extra=sharding,
                                          kubeconfig=kubeconfig, pod_namespace=self.op_namespace)
                          for i in self.identities]  # fmt: skip

    # ----- what is observed -----
    @property
    def pods(self) -> list[str]:
        return sorted(self.kind_of)

    @property
    def leaking(self) -> set[str]:
        return {p for p, k in self.kind_of.items() if k != "healthy"}

    def expected_split(self, members: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in members}
        for p in self.pods:
            out[str(owner(sorted(members), pod_key(self.namespace, p)))].add(p)
        return out

    def live(self) -> list[OperatorProcess]:
        return [p for p in self.operators if p.proc.poll() is None]

    def followed(self) -> dict[str, float | None]:
        return {p.identity: p.metric("memorywatch_targets") for p in self.live()}

    def members_seen(self) -> dict[str, float | None]:
        return {p.identity: p.metric("memorywatch_shard_members") for p in self.live()}

    def split_as_hashed(self) -> bool:
        members = [p.identity for p in self.live()]
        want = {m: float(len(s)) for m, s in self.expected_split(members).items()}
        return self.followed() == want and all(v == len(members) for v in self.members_seen().values())

    def heap_counts(self) -> dict[str, int]:
        assert self.fleet is not None
        return {self.pod_of[a]: c["heap"] for a, c in self.fleet.counts().items() if a in self.pod_of}

    def window(self, seconds: float) -> Coverage:
        """The simulator's heap scrapes per pod over the next `seconds` (a measurement: it takes that long)."""
        t0 = time.monotonic()
        before = self.heap_counts()
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        after = self.heap_counts()
        return classify(before, after, time.monotonic() - t0, self.cfg.interval_seconds)

    def captures(self) -> dict[str, int]:
        """MemoryCaptures per pod (every watch of the namespace)."""
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "memorycaptures")[
            "items"
        ]
        out: dict[str, int] = {}
        for c in items:
            pod = str((c.get("spec") or {}).get("pod"))
            out[pod] = out.get(pod, 0) + 1
        return out

    def api_requests(self) -> dict[str, float]:
        resp = self.api.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
                                 _return_http_data_only=True)  # fmt: skip
        return request_counts(resp.data.decode())

    def kill(self, identity: str) -> Handover:
        """SIGKILL one replica; answers when the survivors followed its pods (their own metrics) and when the
        simulator saw each of its pods scraped again."""
        victim = next(p for p in self.operators if p.identity == identity)
        mine = self.expected_split([p.identity for p in self.live()])[identity]
        t0 = time.monotonic()
        victim.stop(signal.SIGKILL)
        time.sleep(1.0)  # a scrape in flight at the kill is counted by now
        snap = self.heap_counts()
        followed_at: float | None = None
        scraped_at: float | None = None
        bound = 2 * self.cfg.lease_seconds + 3 * self.cfg.interval_seconds + 30
        while time.monotonic() - t0 < bound and (followed_at is None or scraped_at is None):
            now = time.monotonic() - t0
            if followed_at is None and sum(v or 0 for v in self.followed().values()) == len(self.pods):
                followed_at = now
            if scraped_at is None:
                counts = self.heap_counts()
                if all(counts.get(p, 0) > snap.get(p, 0) for p in mine):
                    scraped_at = now
            time.sleep(0.5)
        return Handover(identity, len(mine), followed_at, scraped_at)

    # ----- teardown -----
    def close(self) -> None:
        for p in self.operators:
            p.stop()
        for plural in ("memorycaptures", "memorywatches"):  # the operators' finalizers
            with contextlib.suppress(client.ApiException):
                for o in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)[
                    "items"
                ]:
                    with contextlib.suppress(client.ApiException):
                        self.custom.patch_namespaced_custom_object(
                            GROUP, VERSION, self.namespace, plural, o["metadata"]["name"],
                            {"metadata": {"finalizers": None}})  # fmt: skip
        if self.fleet is not None:
            self.fleet.__exit__(None, None, None)
        if self.rendered:
            self.cluster.kubectl("delete", "-n", self.op_namespace, "--ignore-not-found", "-f", "-",
                                 input=self.rendered, check=False)  # fmt: skip
        if self.op_namespace:
            with contextlib.suppress(client.ApiException):
                self.core.delete_namespace(self.op_namespace)

    def delete_extra_nodes(self) -> None:
        """After the namespace (and its pods) is gone."""
        for name in self.extra_nodes:
            with contextlib.suppress(client.ApiException):
                self.core.delete_node(name)


@dataclasses.dataclass(frozen=True)
class Handover:
    victim: str
    pods: int
    followed_seconds: float | None  # survivors' memorywatch_targets sum back to every pod
    scraped_seconds: float | None  # every one of the victim's pods scraped again (the simulator's counts)
