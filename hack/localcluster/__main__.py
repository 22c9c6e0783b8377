"""CLI behind hack/local-cluster: up | down [--purge] | status [--json]."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator

from .cluster import ClusterError, down, status, up
from .config import cluster_dir

BINARY_ENV = ["ETCD", "KUBE_APISERVER", "KUBE_CONTROLLER_MANAGER", "KUBE_SCHEDULER", "KUBECTL", "KWOK", "HELM",
              "VERSITYGW", "KWOK_STAGES", "MW_TOOLS_BIN"]  # fmt: skip


@contextlib.contextmanager
def cluster_lock() -> Iterator[None]:
    """One `up`/`down` at a time per cluster directory (several test sessions may share a cluster)."""
    directory = cluster_dir()
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                "local-cluster: another up/down of this cluster is running; waiting for it", file=sys.stderr
            )
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def main() -> int:
    parser = argparse.ArgumentParser(prog="hack/local-cluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start (or heal) the cluster; prints the admin kubeconfig path last")
    d = sub.add_parser("down", help="stop every process the cluster started")
    d.add_argument("--purge", action="store_true", help="also delete the cluster directory")
    s = sub.add_parser("status", help="components, pids, liveness, log files")
    s.add_argument("--json", action="store_true")
    li = sub.add_parser(
        "load-image", help="make an OCI image archive runnable by the pod runner (like kind load)"
    )
    li.add_argument("archive", help="an OCI image layout tar, e.g. dist/memorywatch-<version>.oci.tar")
    args = parser.parse_args()
    try:
        if args.cmd == "status":
            return status(as_json=args.json)
        if args.cmd == "load-image":
            from pathlib import Path

            from .images import ImageError, load_archive

            try:
                directory = cluster_dir()
                directory.mkdir(parents=True, exist_ok=True)
                image = load_archive(Path(args.archive), directory)
            except (ImageError, OSError) as e:
                print(f"local-cluster: ERROR: load-image {args.archive}: {e}", file=sys.stderr)
                return 1
            print(f"{' '.join(image.refs)} {image.digest} -> {image.rootfs}", flush=True)
            return 0
        with cluster_lock():
            if args.cmd == "up":
                cfg = up({k: os.environ[k] for k in BINARY_ENV if os.environ.get(k)})
                print(cfg.admin_kubeconfig, flush=True)
                return 0
            down(purge=args.purge)
            return 0
    except (ClusterError, ValueError) as e:
        print(f"local-cluster: ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
