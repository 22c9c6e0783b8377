"""The pod runner: runs the containers of pods bound to the kwok nodes as local processes.

What a kubelet would do, on one machine and without images:
- a pod is started once kwok has marked it Running and given it a pod IP (127.1.N.M, from the node's podCIDR);
- each container's `command` + `args` is run as a local process in its own process group, with the container's
  env (literal values, fieldRef, secretKeyRef, configMapKeyRef, resourceFieldRef, envFrom) and `$(VAR)`
  expansion exactly as the kubelet does it (see expansion.py);
- a pod whose ServiceAccount token is automounted gets a kubeconfig for that ServiceAccount (TokenRequest bound
  to the pod) in KUBECONFIG, plus token/ca.crt/namespace files;
- emptyDir, PVC (hostPath PV), hostPath, configMap and secret volumes are local directories; each mount is
  announced as MW_MOUNT_<MOUNT_PATH> and args/env values that start with a mountPath are rewritten to it;
- processes are restarted according to restartPolicy with exponential backoff (1s doubling to 30s), and
  stopped with SIGTERM, then SIGKILL after the pod's grace period, when the pod is deleted.

Layout under <cluster dir>/pods/<namespace>/<pod>/:
  <container>.log       stdout+stderr of every run of the container (appended, with a header per start)
  status.json           uid, pod IP, and per container: pid, restarts, state, last exit code
  run-<uid>/            runtime dir of one pod incarnation (removed when the pod is gone):
    kubeconfig, serviceaccount/{token,ca.crt,namespace}, volumes/<volume>/
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import images, procs
from .config import Config
from .expansion import expand, mapping_for

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 30.0  # a container that ran this long starts its backoff afresh
SHUTDOWN_GRACE_MAX = 10.0  # when the runner itself stops (hack/local-cluster down)
#: A pod with this annotation set to "true" runs no process: kwok alone makes it Running with an IP, and whatever
#: serves that IP is outside the cluster (the scale test's fleet simulator). The runner leaves it alone entirely
#: (no process, no kwok Logs/PortForward objects, no events), so thousands of such pods cost it nothing.
NO_PROCESS_ANNOTATION = "localcluster.memorywatch.dev/no-process"

Pod = dict[str, Any]


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} pod-runner: {msg}", flush=True)


def sanitize_mount_path(path: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_").upper()
    return s or "ROOT"


class ContainerConfigError(Exception):
    """The container cannot be started yet (missing secret, unbound PVC, ...); retried with backoff."""


@dataclass
class ContainerRun:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    started_wall: str = ""
    exited_wall: str = ""
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    last_exit: int | None = None
    finished: bool = False  # exited and not to be restarted
    error: str | None = None
    term_deadline: float | None = None


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    pod: Pod
    dir: Path
    run_dir: Path
    containers: dict[str, ContainerRun] = field(default_factory=dict)
    terminating: bool = False
    grace: float = 30.0
    sa_ready: bool = False
    volumes: dict[str, Path] | None = None
    phase_reported: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Runner:
    def __init__(self, cluster_dir: Path) -> None:
        from kubernetes import client, config

        cfg = Config.load(cluster_dir)
        if cfg is None:
            raise SystemExit(f"pod-runner: no cluster.json in {cluster_dir}")
        self.cfg = cfg
        self.api = config.new_client_from_config(
            config_file=str(cfg.p("kubeconfigs", "pod-runner.kubeconfig"))
        )
        self.core = client.CoreV1Api(self.api)
        self.pods: dict[str, PodRun] = {}
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.ready_written = False
        self.shutting_down = False

    # ---- watching ------------------------------------------------------------------------------------

    def to_dict(self, obj: Any) -> Pod:
        return self.api.sanitize_for_serialization(obj)  # type: ignore[no-any-return]

    def watch_loop(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        while not self.stop_event.is_set():
            try:
                lst = self.core.list_pod_for_all_namespaces()
                seen = set()
                for item in lst.items:
                    pod = self.to_dict(item)
                    seen.add(pod["metadata"]["uid"])
                    self.on_pod(pod)
                with self.lock:
                    for uid in list(self.pods):
                        if uid not in seen:
                            self.on_pod_gone(uid)
                if not self.ready_written:
                    ready = self.cfg.p("run", "pod-runner.ready")
                    ready.write_text(f"{os.getpid()}\n")
                    self.ready_written = True
                    log(f"ready; managing {len(self.pods)} pod(s)")
                rv = lst.metadata.resource_version
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces, resource_version=rv,
                                   timeout_seconds=60, allow_watch_bookmarks=True):  # fmt: skip
                    if self.stop_event.is_set():
                        w.stop()
                        break
                    kind = ev["type"]
                    if kind == "ERROR":
                        break
                    if kind == "BOOKMARK":
                        continue
                    pod = self.to_dict(ev["object"])
                    if kind == "DELETED":
                        with self.lock:
                            self.on_pod_gone(pod["metadata"]["uid"], pod)
                    else:
                        self.on_pod(pod)
            except ApiException as e:
                if e.status != 410:
                    log(f"watch error: {e.status} {e.reason}; relisting in 1s")
                    self.stop_event.wait(1)
            except Exception as e:  # noqa: BLE001 - keep watching whatever happens; log it
                log(f"watch error: {e!r}; relisting in 1s")
                self.stop_event.wait(1)

    @staticmethod
    def should_run(pod: Pod) -> bool:
        st = pod.get("status") or {}
        if ((pod.get("metadata") or {}).get("annotations") or {}).get(NO_PROCESS_ANNOTATION) == "true":
            return False
        return bool(
            (pod.get("spec") or {}).get("nodeName")
            and st.get("podIP")
            and not pod["metadata"].get("deletionTimestamp")
            and st.get("phase") == "Running"
        )

    def on_pod(self, pod: Pod) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            run = self.pods.get(uid)
            if run is not None:
                run.pod = pod if not run.terminating else run.pod
                if pod["metadata"].get("deletionTimestamp") and not run.terminating:
                    grace = pod["metadata"].get("deletionGracePeriodSeconds")
                    self.terminate(run, grace)
                return
            if not self.should_run(pod):
                return
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            pdir = self.cfg.pods_dir / ns / name
            run = PodRun(uid=uid, namespace=ns, name=name, pod=pod, dir=pdir, run_dir=pdir / f"run-{uid}")
            run.grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30) or 0)
            for c in pod["spec"]["containers"]:
                run.containers[c["name"]] = ContainerRun(name=c["name"])
            run.run_dir.mkdir(parents=True, exist_ok=True)
            self.pods[uid] = run
            log(f"pod {run.key} ({uid}) on {pod['spec']['nodeName']} ip {pod['status']['podIP']}: starting")
            self.publish_logs_and_ports(run)
            self.sync_pod(run)

    def on_pod_gone(self, uid: str, pod: Pod | None = None) -> None:
        run = self.pods.get(uid)
        if run is None:
            return
        if not run.terminating:
            grace = None
            if pod is not None:
                grace = pod["metadata"].get("deletionGracePeriodSeconds")
            self.terminate(run, grace)

    # ---- supervising ---------------------------------------------------------------------------------

    def terminate(self, run: PodRun, grace: float | None = None, cap: float | None = None) -> None:
        g = run.grace if grace is None else float(grace)
        if cap is not None:
            g = min(g, cap)
        run.terminating = True
        log(f"pod {run.key}: stopping containers (grace {g:.0f}s)")
        if any(c.proc is not None for c in run.containers.values()):
            self.event(
                run, None, "Normal", "Killing", f"Stopping processes (SIGTERM, SIGKILL after {g:.0f}s)"
            )
        now = time.monotonic()
        for c in run.containers.values():
            c.finished = True
            if c.proc is not None and c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
                c.term_deadline = now + g

    def supervise_once(self) -> None:
        now = time.monotonic()
        with self.lock:
            for uid, run in list(self.pods.items()):
                changed = False
                for c in run.containers.values():
                    if c.proc is not None:
                        code = c.proc.poll()
                        if code is None:
                            if c.term_deadline is not None and now >= c.term_deadline:
                                log(f"pod {run.key} container {c.name}: grace period over, SIGKILL")
                                with contextlib.suppress(ProcessLookupError):
                                    os.killpg(c.proc.pid, signal.SIGKILL)
                                c.term_deadline = now + 3600
                            continue
                        self.container_exited(run, c, code)
                        changed = True
                if run.terminating:
                    if all(c.proc is None for c in run.containers.values()):
                        self.reap_group_leftovers(run)
                        if self.shutting_down:
                            # `down`: the pod still exists; keep its emptyDirs for the next `up` (like a node reboot)
                            self.write_status(run, "Stopped")
                        else:
                            shutil.rmtree(run.run_dir, ignore_errors=True)
                            self.write_status(run, "Terminated")
                        del self.pods[uid]
                        log(f"pod {run.key}: all containers stopped")
                    continue
                if any(
                    not c.finished and c.proc is None and now >= c.next_start for c in run.containers.values()
                ):
                    self.sync_pod(run)
                    changed = True
                if changed:
                    self.write_status(run)
                    self.report_phase(run)

    def reap_group_leftovers(self, run: PodRun) -> None:
        """Children a container left behind in its process group (e.g. `sh -c 'a & b'`)."""
        for pid in procs.marked_pids(self.cfg.dir):
            if procs.environ_has(pid, "MW_POD_UID", run.uid):
                procs.stop([pid], grace=2)

    def container_exited(self, run: PodRun, c: ContainerRun, code: int) -> None:
        assert c.proc is not None
        pgid = c.proc.pid
        if code < 0:  # killed by a signal: report it the way a container runtime does (128 + signal)
            code = 128 - code
        c.proc = None
        c.last_exit = code
        c.exited_wall = utcnow()
        ran = time.monotonic() - c.started_at
        # The container is gone, so is everything it started in its process group (as with a container).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        self.append_log(run, c.name, f"==== exited with code {code} after {ran:.1f}s")
        if run.terminating:
            return
        policy = run.pod["spec"].get("restartPolicy", "Always")
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            if ran >= BACKOFF_RESET_AFTER:
                c.backoff = BACKOFF_START
            c.next_start = time.monotonic() + c.backoff
            log(f"pod {run.key} container {c.name}: exited with {code}; restarting in {c.backoff:.0f}s")
            self.append_log(run, c.name, f"==== restarting in {c.backoff:.0f}s (restartPolicy {policy})")
            self.event(run, c.name, "Warning", "BackOff",
                       f"Process exited with code {code}; restarting in {c.backoff:.0f}s")  # fmt: skip
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)
            c.restarts += 1
            self.patch_container_statuses(run)
        else:
            c.finished = True
            log(
                f"pod {run.key} container {c.name}: exited with {code}; not restarting (restartPolicy {policy})"
            )

    def sync_pod(self, run: PodRun) -> None:
        now = time.monotonic()
        for spec in run.pod["spec"]["containers"]:
            c = run.containers[spec["name"]]
            if c.finished or c.proc is not None or now < c.next_start:
                continue
            try:
                self.start_container(run, spec, c)
                c.error = None
                self.event(
                    run, c.name, "Normal", "Started", f"Started process {c.proc.pid if c.proc else '?'}"
                )
                if c.restarts:
                    self.patch_container_statuses(run)
            except ContainerConfigError as e:
                if c.error != str(e):
                    self.event(run, c.name, "Warning", "Failed", f"Cannot start: {e}")
                c.error = str(e)
                c.next_start = now + c.backoff
                c.backoff = min(c.backoff * 2, BACKOFF_MAX)
                log(f"pod {run.key} container {c.name}: cannot start yet: {e}")
                self.append_log(run, c.name, f"==== cannot start: {e} (retrying)")
            except Exception as e:  # noqa: BLE001 - a bad pod must not take the runner down
                if c.error != f"{type(e).__name__}: {e}":
                    self.event(run, c.name, "Warning", "Failed", f"Start failed: {type(e).__name__}: {e}")
                c.error = f"{type(e).__name__}: {e}"
                c.next_start = now + c.backoff
                c.backoff = min(c.backoff * 2, BACKOFF_MAX)
                log(f"pod {run.key} container {c.name}: start failed: {c.error}\n{traceback.format_exc()}")
                self.append_log(run, c.name, f"==== start failed: {c.error} (retrying)")
        self.write_status(run)

    # ---- building a container's process -------------------------------------------------------------

    def start_container(self, run: PodRun, spec: Pod, c: ContainerRun) -> None:
        pod = run.pod
        image = images.lookup(Path(self.cfg.dir), spec.get("image") or "")
        if image is not None and not images.host_command_overrides(image, spec.get("command") or []):
            self.start_image_container(run, spec, c, image)
            return
        if not spec.get("command"):
            raise ContainerConfigError(
                f"image {spec.get('image')!r} is not loaded into this cluster and the container has no command: "
                "load it with `hack/local-cluster load-image ARCHIVE`, or set command to a local executable"
            )
        base = self.base_env(run)
        env = self.container_env(pod, spec, base)
        mounts = self.mounts(run, spec)
        mount_env = {f"MW_MOUNT_{sanitize_mount_path(mp)}": str(local) for mp, local in mounts.items()}
        # the container's env first (as a kubelet), then MW_MOUNT_* so args can say $(MW_MOUNT_DATA)
        mapping = mapping_for(env, mount_env)
        command = [expand(x, mapping) for x in spec.get("command") or []]
        args = [expand(x, mapping) for x in spec.get("args") or []]
        env = {k: rewrite_mount_paths(v, mounts) for k, v in env.items()}
        # The executable is a host path (there are no images): a mount such as an emptyDir at /tmp must not
        # capture it when the checkout itself lives under that path (CI clones into /tmp).
        command = [
            x if i == 0 and os.access(x, os.X_OK) else rewrite_mount_paths(x, mounts)
            for i, x in enumerate(command)
        ]
        args = [rewrite_mount_paths(x, mounts) for x in args]
        env.update(mount_env)
        full_env = {**base, **env}
        full_env[procs.MARKER] = self.cfg.dir
        full_env["MW_POD_UID"] = run.uid
        exe = command[0]
        if "/" not in exe:
            found = shutil.which(exe, path=full_env.get("PATH", os.defpath))
            if not found:
                raise ContainerConfigError(f"executable {exe!r} not found in PATH {full_env.get('PATH')}")
            exe = found
        if not os.access(exe, os.X_OK):
            raise ContainerConfigError(f"{exe} does not exist or is not executable")
        cwd = run.run_dir
        if spec.get("workingDir"):
            wd = Path(rewrite_mount_paths(spec["workingDir"], mounts))
            if wd.is_dir():
                cwd = wd
        argv = [exe, *command[1:], *args]
        c.proc = start_logged(argv, env=full_env, cwd=cwd, log_dir=run.dir, container=c.name)
        c.started_at = time.monotonic()
        c.started_wall = utcnow()
        log(f"pod {run.key} container {c.name}: started pid {c.proc.pid}: {' '.join(argv)}")

    def start_image_container(self, run: PodRun, spec: Pod, c: ContainerRun, image: images.Image) -> None:
        """The container from its image (loaded by `hack/local-cluster load-image`): chrooted into the image's
        root filesystem, read-only, as the image's (or the securityContext's) user, with the volumes and the
        ServiceAccount token mounted where the pod says (chroot_exec.py does the mounting)."""
        pod = run.pod
        auto, _ = self.automount(pod)
        if auto:
            self.service_account_env(run)  # writes the token, ca.crt and namespace files
        env = dict(e.split("=", 1) for e in image.env if "=" in e)
        env.update(HOSTNAME=pod["metadata"]["name"], HOME="/")
        env.update(self.container_env(pod, spec, env))
        mapping = mapping_for(env, {})
        command = [expand(x, mapping) for x in spec.get("command") or image.entrypoint]
        if spec.get("args") is not None:
            args = [expand(x, mapping) for x in spec.get("args") or []]
        else:
            args = [] if spec.get("command") else list(image.cmd)
        uid, gid = images.user_of(image, pod, spec)
        sc = {**(pod["spec"].get("securityContext") or {}), **(spec.get("securityContext") or {})}
        if uid == 0 and sc.get("runAsNonRoot"):
            raise ContainerConfigError(
                f"image {image.refs[0]} runs as root and the container has runAsNonRoot: set runAsUser"
            )
        read_only = {
            m["mountPath"].rstrip("/") or "/": bool(m.get("readOnly")) for m in spec.get("volumeMounts") or []
        }
        mounts = self.mounts(run, spec)
        sa_path = "/var/run/secrets/kubernetes.io/serviceaccount"
        if auto and sa_path not in mounts:
            mounts[sa_path] = run.run_dir / "serviceaccount"
            read_only[sa_path] = True
        fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        dirs = self.volume_dirs(run)
        for vol in pod["spec"].get("volumes") or []:  # not hostPath: a kubelet leaves those alone
            if any(
                vol.get(k) is not None
                for k in ("emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected")
            ):
                images.prepare_volume(dirs[vol["name"]], fs_group)
        rootfs = Path(image.rootfs)
        inside = {
            path: images.resolve_in_root(rootfs, path) for path in mounts
        }  # symlinks followed in the image
        for path in inside.values():
            target = rootfs / path.lstrip("/")
            if not target.exists():
                target.mkdir(parents=True, exist_ok=True)  # a mount point, as a runtime makes in its rw layer
        mountpoint = self.cfg.p("mnt", f"{run.uid}-{c.name}")  # empty outside the container's namespace
        mountpoint.mkdir(parents=True, exist_ok=True)
        env[procs.MARKER] = str(self.cfg.dir)
        env["MW_POD_UID"] = run.uid
        spec_file = run.run_dir / f"{c.name}.chroot.json"
        spec_file.touch(mode=0o600)
        spec_file.write_text(json.dumps({
            "rootfs": str(rootfs), "mountpoint": str(mountpoint),
            "mounts": [[str(local), inside[path], read_only.get(path, False)] for path, local in mounts.items()],
            "uid": uid, "gid": gid, "argv": [*command, *args], "env": env,
            "working_dir": spec.get("workingDir") or image.working_dir,
        }))  # fmt: skip
        launcher_env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            procs.MARKER: str(self.cfg.dir),
            "MW_POD_UID": run.uid,
        }
        argv = ["unshare", "--mount", "--propagation", "private", "--",
                sys.executable, "-m", "localcluster.chroot_exec", str(spec_file)]  # fmt: skip
        c.proc = start_logged(argv, env=launcher_env, cwd=run.run_dir, log_dir=run.dir, container=c.name)
        c.started_at = time.monotonic()
        c.started_wall = utcnow()
        log(f"pod {run.key} container {c.name}: started pid {c.proc.pid}: chroot {rootfs} as uid {uid} gid {gid}, "
            f"read-only root, image {image.refs[0]}@{image.digest[:19]}: {' '.join([*command, *args])}")  # fmt: skip

    def base_env(self, run: PodRun) -> dict[str, str]:
        pod = run.pod
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(run.run_dir),
            "HOSTNAME": pod["metadata"]["name"],
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "MW_POD_DIR": str(run.run_dir),
        }
        kube = self.service_account_env(run)
        env.update(kube)
        return env

    def service_env(self) -> dict[str, str]:
        """What the kubelet derives from the `kubernetes` Service, pointing at the local apiserver."""
        port = str(self.cfg.ports["apiserver"])
        return {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
            "KUBERNETES_PORT_443_TCP": f"tcp://127.0.0.1:{port}",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": port,
            "KUBERNETES_PORT_443_TCP_ADDR": "127.0.0.1",
        }

    def container_env(self, pod: Pod, spec: Pod, base: dict[str, str]) -> dict[str, str]:
        """The kubelet's makeEnvironmentVariables, in the same order, with the same expansion rules."""
        ns = pod["metadata"]["namespace"]
        tmp: dict[str, str] = {}
        service_env = self.service_env()
        for src in spec.get("envFrom") or []:
            prefix = src.get("prefix") or ""
            if src.get("configMapRef"):
                ref = src["configMapRef"]
                data = self.get_config_map(ns, ref["name"], ref.get("optional"))
                for k, v in (data or {}).items():
                    tmp[prefix + k] = v
            elif src.get("secretRef"):
                ref = src["secretRef"]
                data = self.get_secret(ns, ref["name"], ref.get("optional"))
                for k, v in (data or {}).items():
                    tmp[prefix + k] = v
        mapping = mapping_for(tmp, service_env)
        for var in spec.get("env") or []:
            name, value, vfrom = var["name"], var.get("value") or "", var.get("valueFrom")
            if value:
                value = expand(value, mapping)
            elif vfrom:
                if vfrom.get("fieldRef"):
                    value = field_ref(pod, vfrom["fieldRef"]["fieldPath"])
                elif vfrom.get("resourceFieldRef"):
                    value = resource_field_ref(spec, vfrom["resourceFieldRef"])
                elif vfrom.get("configMapKeyRef"):
                    ref = vfrom["configMapKeyRef"]
                    data = self.get_config_map(ns, ref["name"], ref.get("optional"))
                    if data is None:
                        continue
                    if ref["key"] not in data:
                        if ref.get("optional"):
                            continue
                        raise ContainerConfigError(
                            f"couldn't find key {ref['key']} in ConfigMap {ns}/{ref['name']}"
                        )
                    value = data[ref["key"]]
                elif vfrom.get("secretKeyRef"):
                    ref = vfrom["secretKeyRef"]
                    data = self.get_secret(ns, ref["name"], ref.get("optional"))
                    if data is None:
                        continue
                    if ref["key"] not in data:
                        if ref.get("optional"):
                            continue
                        raise ContainerConfigError(
                            f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}"
                        )
                    value = data[ref["key"]]
                else:
                    raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(vfrom)}")
            tmp[name] = value
        result = dict(service_env)
        result.update(tmp)
        return result

    def get_config_map(self, ns: str, name: str, optional: bool | None) -> dict[str, str] | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.core.read_namespaced_config_map(name, ns).data or {}
        except ApiException as e:
            if e.status == 404:
                if optional:
                    return None
                raise ContainerConfigError(f'configmap "{name}" not found') from None
            raise

    def get_secret(self, ns: str, name: str, optional: bool | None) -> dict[str, str] | None:
        from kubernetes.client.rest import ApiException

        try:
            data = self.core.read_namespaced_secret(name, ns).data or {}
        except ApiException as e:
            if e.status == 404:
                if optional:
                    return None
                raise ContainerConfigError(f'secret "{name}" not found') from None
            raise
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}

    # ---- service account -----------------------------------------------------------------------------

    def automount(self, pod: Pod) -> tuple[bool, str]:
        from kubernetes.client.rest import ApiException

        spec = pod["spec"]
        sa = spec.get("serviceAccountName") or "default"
        if spec.get("automountServiceAccountToken") is not None:
            return bool(spec["automountServiceAccountToken"]), sa
        try:
            obj = self.core.read_namespaced_service_account(sa, pod["metadata"]["namespace"])
        except ApiException as e:
            if e.status == 404:
                raise ContainerConfigError(f'serviceaccount "{sa}" not found') from None
            raise
        return obj.automount_service_account_token is not False, sa

    def service_account_env(self, run: PodRun) -> dict[str, str]:
        auto, sa = self.automount(run.pod)
        if not auto:
            return {}
        sa_dir = run.run_dir / "serviceaccount"
        kubeconfig = run.run_dir / "kubeconfig"
        if not run.sa_ready:
            from kubernetes.client.rest import ApiException

            body = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": 86400,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": run.name, "uid": run.uid},
                },
            }
            try:
                tr = self.core.create_namespaced_service_account_token(sa, run.namespace, body)
            except ApiException as e:
                raise ContainerConfigError(f"TokenRequest for serviceaccount {run.namespace}/{sa} failed: "
                                           f"{e.status} {e.reason}") from None  # fmt: skip
            sa_dir.mkdir(parents=True, exist_ok=True)
            (sa_dir / "token").write_text(tr.status.token)
            shutil.copyfile(self.cfg.ca_file, sa_dir / "ca.crt")
            (sa_dir / "namespace").write_text(run.namespace)
            user = f"system:serviceaccount:{run.namespace}:{sa}"
            doc = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": self.cfg.api_url,
                                                            "certificate-authority": str(sa_dir / "ca.crt")}}],
                "users": [{"name": user, "user": {"tokenFile": str(sa_dir / "token")}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": user,
                                                            "namespace": run.namespace}}],
                "current-context": "local",
            }  # fmt: skip
            kubeconfig.write_text(yaml.safe_dump(doc, sort_keys=False))
            run.sa_ready = True
        return {
            "KUBECONFIG": str(kubeconfig),
            "MW_SERVICEACCOUNT_DIR": str(sa_dir),
            **self.service_env(),
        }

    # ---- volumes -------------------------------------------------------------------------------------

    def volume_dirs(self, run: PodRun) -> dict[str, Path]:
        if run.volumes is not None:
            return run.volumes
        from kubernetes.client.rest import ApiException

        ns = run.namespace
        out: dict[str, Path] = {}
        for vol in run.pod["spec"].get("volumes") or []:
            name = vol["name"]
            local = run.run_dir / "volumes" / name
            if "emptyDir" in vol and vol["emptyDir"] is not None:
                local.mkdir(parents=True, exist_ok=True)
            elif vol.get("persistentVolumeClaim"):
                claim = vol["persistentVolumeClaim"]["claimName"]
                try:
                    pvc = self.core.read_namespaced_persistent_volume_claim(claim, ns)
                except ApiException as e:
                    raise ContainerConfigError(
                        f"persistentvolumeclaim {claim!r}: {e.status} {e.reason}"
                    ) from None
                if not pvc.spec.volume_name or (pvc.status and pvc.status.phase != "Bound"):
                    raise ContainerConfigError(f"persistentvolumeclaim {claim!r} is not bound yet")
                pv = self.core.read_persistent_volume(pvc.spec.volume_name)
                if pv.spec.host_path is not None:
                    local = Path(pv.spec.host_path.path)
                elif pv.spec.local is not None:
                    local = Path(pv.spec.local.path)
                else:
                    local = self.cfg.p("pvc", ns, claim)
                local.mkdir(parents=True, exist_ok=True)
            elif vol.get("hostPath"):
                local = Path(vol["hostPath"]["path"])
                if vol["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                    local.mkdir(parents=True, exist_ok=True)
            elif vol.get("configMap"):
                ref = vol["configMap"]
                data = self.get_config_map(ns, ref["name"], ref.get("optional")) or {}
                write_items(local, data, ref.get("items"))
            elif vol.get("secret"):
                ref = vol["secret"]
                data = self.get_secret(ns, ref["secretName"], ref.get("optional")) or {}
                write_items(local, data, ref.get("items"))
            elif vol.get("projected") and any(
                s.get("serviceAccountToken") for s in vol["projected"].get("sources") or []
            ):
                # kube-api-access-*: the token, ca.crt and namespace the runner already wrote
                local = run.run_dir / "serviceaccount"
                local.mkdir(parents=True, exist_ok=True)
            else:
                local.mkdir(parents=True, exist_ok=True)  # unsupported kinds: an empty directory
            out[name] = local
        run.volumes = out
        return out

    def mounts(self, run: PodRun, spec: Pod) -> dict[str, Path]:
        vols = self.volume_dirs(run)
        out: dict[str, Path] = {}
        for m in spec.get("volumeMounts") or []:
            local = vols.get(m["name"])
            if local is None:
                continue
            if m.get("subPath"):
                local = local / m["subPath"]
                if not local.exists():
                    local.mkdir(parents=True, exist_ok=True)
            out[m["mountPath"].rstrip("/") or "/"] = local
        return out

    # ---- status --------------------------------------------------------------------------------------

    def append_log(self, run: PodRun, container: str, line: str) -> None:
        run.dir.mkdir(parents=True, exist_ok=True)
        with open(run.dir / f"{container}.log", "a") as f:
            f.write(f"{line}\n")

    def write_status(self, run: PodRun, state: str | None = None) -> None:
        doc = {
            "uid": run.uid,
            "namespace": run.namespace,
            "name": run.name,
            "podIP": (run.pod.get("status") or {}).get("podIP"),
            "state": state or ("Terminating" if run.terminating else "Running"),
            "containers": {
                c.name: {
                    "pid": c.proc.pid if c.proc else None,
                    "running": c.proc is not None,
                    "restarts": c.restarts,
                    "lastExitCode": c.last_exit,
                    "error": c.error,
                    "log": str(run.dir / f"{c.name}.log"),
                }
                for c in run.containers.values()
            },
        }
        run.dir.mkdir(parents=True, exist_ok=True)
        tmp = run.dir / "status.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(run.dir / "status.json")

    def patch_container_statuses(self, run: PodRun) -> None:
        """After a container exits (and is to be restarted) or is restarted: make `kubectl get pods` true.
        kwok's pod-ready stage marks every container running and ready once; from the first restart on, the
        runner reports restartCount, lastState, waiting/CrashLoopBackOff while in backoff, and the pod's
        Ready/ContainersReady conditions. (kwok leaves a Running pod's status alone.)"""
        st = run.pod.get("status") or {}
        statuses = st.get("containerStatuses") or []
        if not statuses or run.terminating:
            return
        new = []
        for s in statuses:
            s = dict(s)
            c = run.containers.get(s.get("name", ""))
            if c is not None and c.restarts:
                s["restartCount"] = c.restarts
                if c.last_exit is not None:
                    s["lastState"] = {"terminated": {
                        "exitCode": c.last_exit, "reason": "Error" if c.last_exit else "Completed",
                        "startedAt": c.started_wall or None, "finishedAt": c.exited_wall or None}}  # fmt: skip
                if c.proc is not None:
                    s.update(ready=True, started=True, state={"running": {"startedAt": c.started_wall}})
                else:
                    s.update(ready=False, started=False, state={"waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container {c.name}"}})  # fmt: skip
            new.append(s)
        ready = "True" if all(s.get("ready") for s in new) else "False"
        now = utcnow()
        conds = []
        for cond in st.get("conditions") or []:
            if cond.get("type") in ("Ready", "ContainersReady") and cond.get("status") != ready:
                conds.append({"type": cond["type"], "status": ready, "lastTransitionTime": now,
                              "reason": "ContainersNotReady" if ready == "False" else None})  # fmt: skip
        body: Pod = {"status": {"containerStatuses": new}}
        if conds:
            body["status"]["conditions"] = conds
        self.patch_status(run, body)

    def report_phase(self, run: PodRun) -> None:
        """restartPolicy Never/OnFailure: when every container has finished, the pod Succeeded or Failed."""
        if run.phase_reported or not all(c.finished for c in run.containers.values()):
            return
        phase = "Succeeded" if all(c.last_exit == 0 for c in run.containers.values()) else "Failed"
        run.phase_reported = phase
        statuses = []
        for s in (run.pod.get("status") or {}).get("containerStatuses") or []:
            c = run.containers.get(s.get("name"))
            code = c.last_exit if c and c.last_exit is not None else 0
            statuses.append({**s, "ready": False, "state": {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error"}}})  # fmt: skip
        conds = [
            {**cond, "status": "False"} if cond.get("type") in ("Ready", "ContainersReady") else cond
            for cond in (run.pod.get("status") or {}).get("conditions") or []
        ]
        log(f"pod {run.key}: all containers finished; phase {phase}")
        self.patch_status(
            run, {"status": {"phase": phase, "containerStatuses": statuses, "conditions": conds}}
        )

    def publish_logs_and_ports(self, run: PodRun) -> None:
        """kwok Logs and PortForward objects for the pod (owned by it, so garbage-collected with it): kwok then
        serves `kubectl logs` from the container log files and `kubectl port-forward` to <podIP>:<port>."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        custom = client.CustomObjectsApi(self.api)
        owner = [
            {"apiVersion": "v1", "kind": "Pod", "name": run.name, "uid": run.uid, "blockOwnerDeletion": False}
        ]
        containers = run.pod["spec"]["containers"]
        ip = run.pod["status"]["podIP"]
        ports = sorted(
            {p["containerPort"] for c in containers for p in c.get("ports") or [] if p.get("containerPort")}
        )
        objects = [
            (
                "logs",
                {
                    "logs": [
                        {
                            "containers": [c["name"]],
                            "logsFile": str(run.dir / f"{c['name']}.cri.log"),
                            "previousLogsFile": str(run.dir / f"{c['name']}.previous.cri.log"),
                            "follow": True,
                        }
                        for c in containers
                    ]
                },
            ),
        ]
        if ports:
            objects.append(
                (
                    "portforwards",
                    {"forwards": [{"ports": [p], "target": {"address": ip, "port": p}} for p in ports]},
                )
            )
        for plural, spec in objects:
            body = {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "Logs" if plural == "logs" else "PortForward",
                "metadata": {"name": run.name, "namespace": run.namespace, "ownerReferences": owner},
                "spec": spec,
            }
            try:
                custom.create_namespaced_custom_object(
                    "kwok.x-k8s.io", "v1alpha1", run.namespace, plural, body
                )
            except ApiException as e:
                if e.status == 409:  # left by a previous incarnation of a same-named pod: replace it
                    with contextlib.suppress(ApiException):
                        custom.delete_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", run.namespace, plural,
                                                               run.name)  # fmt: skip
                        custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", run.namespace, plural,
                                                               body)  # fmt: skip
                elif e.status not in (403, 404):
                    log(f"pod {run.key}: cannot create kwok {plural}: {e.status} {e.reason}")

    def event(self, run: PodRun, container: str | None, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the pod, so `kubectl describe pod` / `kubectl get events` show what the runner did.
        (A pod that kwok has already deleted gets events too; they simply expire.)"""
        from kubernetes.client.rest import ApiException

        now = utcnow()
        node = run.pod["spec"].get("nodeName", "")
        obj: Pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": run.namespace,
            "name": run.name,
            "uid": run.uid,
        }
        if container:
            obj["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "metadata": {"generateName": f"{run.name}.", "namespace": run.namespace},
            "involvedObject": obj,
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": "memorywatch-pod-runner", "host": node},
            "reportingComponent": "memorywatch-pod-runner",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(run.namespace, body)
        except ApiException as e:
            if e.status not in (403, 404):  # namespace being deleted
                log(f"pod {run.key}: event {reason} not recorded: {e.status} {e.reason}")

    def patch_status(self, run: PodRun, body: Pod) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.patch_namespaced_pod_status(run.name, run.namespace, body)
        except ApiException as e:
            log(f"pod {run.key}: status patch failed: {e.status} {e.reason}")

    # ---- main ----------------------------------------------------------------------------------------

    def kill_orphans(self) -> None:
        """Pod processes a previous runner of this cluster left behind (it crashed or was SIGKILLed): stop them,
        so the pods' new processes can bind their pod IPs."""
        orphans = [p for p in procs.marked_pids(self.cfg.dir) if procs.environ_get(p, "MW_POD_UID")]
        if orphans:
            log(f"stopping {len(orphans)} pod process(es) left by a previous runner: {orphans}")
            procs.stop(orphans, grace=5)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        self.kill_orphans()
        t = threading.Thread(target=self.watch_loop, name="watch", daemon=True)
        t.start()
        while not self.stop_event.is_set():
            try:
                self.supervise_once()
            except Exception:  # noqa: BLE001
                log(f"supervise error:\n{traceback.format_exc()}")
            self.stop_event.wait(0.2)
        log("stopping all pod processes")
        self.shutting_down = True
        with self.lock:
            for run in self.pods.values():
                if not run.terminating:
                    self.terminate(run, cap=SHUTDOWN_GRACE_MAX)
                else:
                    for c in run.containers.values():
                        if c.term_deadline is not None:
                            c.term_deadline = min(c.term_deadline, time.monotonic() + SHUTDOWN_GRACE_MAX)
        deadline = time.monotonic() + SHUTDOWN_GRACE_MAX + 5
        while self.pods and time.monotonic() < deadline:
            self.supervise_once()
            time.sleep(0.1)
        self.cfg.p("run", "pod-runner.ready").unlink(missing_ok=True)
        log("stopped")


def start_logged(
    argv: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path, container: str
) -> subprocess.Popen[bytes]:
    """Start a container process in its own process group. Its stdout and stderr are pumped line by line into
    <container>.log (plain, appended across restarts) and <container>.cri.log (CRI log format, this run only;
    the previous run's is kept as <container>.previous.cri.log) — kwok serves the latter to `kubectl logs`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    plain_path = log_dir / f"{container}.log"
    cri_path = log_dir / f"{container}.cri.log"
    if cri_path.exists():
        cri_path.replace(log_dir / f"{container}.previous.cri.log")
    plain = open(plain_path, "ab", buffering=0)  # noqa: SIM115 - closed by the last pump thread
    cri = open(cri_path, "ab", buffering=0)  # noqa: SIM115
    plain.write(f"==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except BaseException:
        plain.close()
        cri.close()
        raise
    lock = threading.Lock()
    open_streams = [2]

    def pump(stream: Any, name: str) -> None:
        try:
            for line in iter(stream.readline, b""):
                ts = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                full = line.endswith(b"\n")
                with lock:
                    plain.write(line if full else line + b"\n")
                    cri.write(
                        f"{ts} {name} {'F' if full else 'P'} ".encode() + (line if full else line + b"\n")
                    )
        finally:
            stream.close()
            with lock:
                open_streams[0] -= 1
                if open_streams[0] == 0:
                    plain.close()
                    cri.close()

    for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
        threading.Thread(
            target=pump, args=(stream, name), name=f"log-{container}-{name}", daemon=True
        ).start()
    return proc


def utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_items(local: Path, data: dict[str, str], items: list[Pod] | None) -> None:
    local.mkdir(parents=True, exist_ok=True)
    pairs = [(it["key"], it["path"]) for it in items] if items else [(k, k) for k in data]
    for key, rel in pairs:
        if key in data:
            dest = local / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(data[key])


def rewrite_mount_paths(value: str, mounts: dict[str, Path]) -> str:
    """`/data/x` -> `<local dir of /data>/x`, also after the first `=` of a flag (`-dir=/data/x`)."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        local = str(mounts[mount_path])
        for prefix in ("", *_flag_prefix(value)):
            rest = value[len(prefix) :]
            if rest == mount_path or rest.startswith(mount_path.rstrip("/") + "/"):
                return prefix + local + rest[len(mount_path.rstrip("/")) :] if mount_path != "/" else value
    return value


def _flag_prefix(value: str) -> list[str]:
    if value.startswith("-") and "=" in value:
        return [value[: value.index("=") + 1]]
    return []


def field_ref(pod: Pod, path: str) -> str:
    md, spec, st = pod["metadata"], pod["spec"], pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": md.get("name"),
        "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": st.get("hostIP"),
        "status.hostIPs": ",".join(x["ip"] for x in st.get("hostIPs") or []),
        "status.podIP": st.get("podIP"),
        "status.podIPs": ",".join(x["ip"] for x in st.get("podIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        d = md.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef {path!r}")
    return str(simple[path] or "")


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024, "Mi": 1024**2,
           "Gi": 1024**3, "Ti": 1024**4}  # fmt: skip


def resource_field_ref(spec: Pod, ref: Pod) -> str:
    """limits/requests of this container, rounded up to the divisor as the kubelet does (no node defaults:
    an unset limit reports 0 here, where a kubelet would report the node's allocatable)."""
    kind, _, res = ref["resource"].partition(".")
    q = ((spec.get("resources") or {}).get(kind) or {}).get(res)
    div = ref.get("divisor") or "1"
    if q is None:
        return "0"
    import math

    def num(s: str) -> float:
        m = _QUANTITY.match(str(s))
        if not m or m.group(2) not in _SUFFIX:
            raise ContainerConfigError(f"cannot parse quantity {s!r}")
        return float(m.group(1)) * _SUFFIX[m.group(2)]

    return str(math.ceil(num(q) / num(div)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cluster-dir", required=True)
    args = parser.parse_args()
    Runner(Path(args.cluster_dir)).run()


if __name__ == "__main__":
    sys.exit(main())
