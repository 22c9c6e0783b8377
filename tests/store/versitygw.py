"""A real S3 server for tests: versitygw (built by hack/build-tools) on a free 127.0.0.1 port, posix backend."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config

from memorywatch.store.s3 import S3Store
from support.gotargets import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 20.0
# Short timeouts and a single attempt, so a test of an outage is over in a second or two.
FAST = {"connect_timeout_seconds": 1.0, "read_timeout_seconds": 3.0, "max_attempts": 1}


@dataclasses.dataclass
class S3Server:
    """One running versitygw with its own root credentials and data directory."""

    binary: pathlib.Path
    workdir: pathlib.Path
    port: int = dataclasses.field(default_factory=free_port)
    access_key: str = dataclasses.field(default_factory=lambda: "mwtest" + secrets.token_hex(6))
    secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_hex(20))
    process: subprocess.Popen[bytes] | None = None
    #: (certificate, key) files: serve https with them instead of http; `ca_file` verifies them.
    tls: tuple[str, str] | None = None
    ca_file: str | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> pathlib.Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / "versitygw.log"

    def start(self) -> S3Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "meta").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROOT_", "VGW_"))}
        env.update(ROOT_ACCESS_KEY=self.access_key, ROOT_SECRET_KEY=self.secret_key, GOMAXPROCS="1")
        tls = ["--cert", self.tls[0], "--key", self.tls[1]] if self.tls else []
        argv = [str(self.binary), "--port", f"127.0.0.1:{self.port}", "--health", "/health", "--quiet", *tls,
                "posix", "--sidecar", str(self.workdir / "meta"), str(self.data_dir)]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        unverified = ssl.create_default_context()
        unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE  # only asks /health
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified)
        )
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"versitygw exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                with opener.open(f"{self.endpoint}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"versitygw not healthy after {START_TIMEOUT_SECONDS}s:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL simulates a crash) and wait for it: no process is left behind."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def admin_client(self) -> Any:
        """A plain boto3 client with the root credentials, for setting up and inspecting buckets."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            verify=self.ca_file if self.tls else None,
        )

    def create_bucket(self) -> str:
        name = f"mw-{secrets.token_hex(5)}"
        client = self.admin_client()
        client.create_bucket(Bucket=name)
        client.close()
        return name

    def store(self, bucket: str, prefix: str = "captures", **overrides: Any) -> S3Store:
        settings: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            **FAST,
            **overrides,
        }
        return S3Store(bucket, prefix, **settings)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in the bucket, as the server lists them."""
        client = self.admin_client()
        try:
            answer = client.list_objects_v2(Bucket=bucket)
            return sorted(o["Key"] for o in answer.get("Contents", []))
        finally:
            client.close()
