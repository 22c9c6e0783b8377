"""A hostile tenant's pod for tests/e2e/test_hostile_tenants.py: serves one kind of hostile input
(tests/scrape/hostile_servers.py, `hostile_go_handler`) on --listen until it is stopped.

Run as a pod's command on the local control plane: `python hostile_pod.py --listen=$(POD_IP):6060 --kind=bomb`.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys

TESTS = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))

from scrape.hostile_servers import RawServer, hostile_go_handler  # noqa: E402


async def serve(host: str, port: int, kind: str) -> None:
    handler = hostile_go_handler(kind, TESTS / "fixtures" / "go1.26")
    async with RawServer(handler, host, port):
        print(f"hostile pod serving {kind} on {host}:{port}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--kind", required=True, choices=["bomb", "arrays", "hang"])
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host, int(port), args.kind))


if __name__ == "__main__":
    main()
