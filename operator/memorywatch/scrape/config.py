"""What the scraper needs to know about a target and how far it may go: frozen, validated config values."""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse

from memorywatch.pprof.jobs import ParseBudget
from memorywatch.workers import PoolLimits

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class TLSConfig:
    """How to talk HTTPS to a target. Paths are PEM files read when the first request needs them.

    `ca_file` None means the system trust store. `cert_file`/`key_file` give a client certificate (mTLS).
    `server_name` overrides the name sent in SNI and checked against the certificate, for targets reached
    by pod IP whose certificate names a Service. `insecure_skip_verify` turns verification off entirely;
    it exists for the same reason Prometheus has it, and should be the last resort.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TLSConfig: cert_file and key_file must be given together")


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """One Go process serving net/http/pprof.

    `url` is the base URL (`http://127.0.0.1:6060`), `pprof_path` where net/http/pprof is mounted.
    `metrics_path` is probed once for Prometheus text (resident memory, threads, finalizer counters); None
    means never ask. `expvar_path` is read only when expvar is asked for. `name` is the display name used in
    samples and errors (default: the URL without credentials). The bearer token is kept out of repr and out of every error message.
    `read_proc_rss` lets the scraper read a loopback target's RSS from /proc; the operator sets it False for
    port-forwarded targets, whose 127.0.0.1 listener is the operator itself, not the target.
    """

    url: str
    pprof_path: str = "/debug/pprof"
    bearer_token: str | None = dataclasses.field(default=None, repr=False)
    tls: TLSConfig | None = None
    metrics_path: str | None = "/metrics"
    name: str | None = None
    expvar_path: str = "/debug/vars"
    # False when the loopback address is not the target's own listener (a port-forward bridge in this process):
    # then /proc would name this process, never the target, and RSS comes from /metrics or MemStats only.
    read_proc_rss: bool = True

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"target URL must start with http:// or https://, got {redact_url(self.url)!r}")
        if not parts.hostname:
            raise ValueError(f"target URL has no host: {redact_url(self.url)!r}")
        if parts.query or parts.fragment:
            raise ValueError(
                f"target URL must be a base URL without query or fragment: {redact_url(self.url)!r}"
            )
        if self.tls is not None and parts.scheme != "https":
            raise ValueError(f"TLS settings given for a plain http:// target: {redact_url(self.url)!r}")
        if self.bearer_token is not None and (
            not self.bearer_token or any(c.isspace() or not c.isprintable() for c in self.bearer_token)
        ):
            # Checked here, because an HTTP library refusing the header would quote it in its error.
            raise ValueError(
                "bearer_token must be non-empty printable text without whitespace (value not shown)"
            )
        if self.bearer_token is not None and (parts.username is not None or parts.password is not None):
            # One request carries one Authorization header: either would silently replace the other.
            raise ValueError(
                "the URL carries user:password@ and a bearer token is given too; a request sends one"
                " Authorization header, so give only one of them"
            )
        paths = (
            ("pprof_path", self.pprof_path),
            ("metrics_path", self.metrics_path),
            ("expvar_path", self.expvar_path),
        )
        for field, path in paths:
            if path is not None and not path.startswith("/"):
                raise ValueError(f"{field} must start with '/', got {path!r}")

    @property
    def display_name(self) -> str:
        """What errors and samples call this target: `name`, else the URL without credentials."""
        return self.name or redact_url(self.url)

    @property
    def safe_url(self) -> str:
        """The base URL without any user:password@, fit for messages, logs and manifests."""
        return redact_url(self.url)

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urllib.parse.urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def is_loopback(self) -> bool:
        host = self.host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def url_for(self, path: str) -> str:
        """The absolute URL of `path` (which starts with '/') under the base URL."""
        return self.url.rstrip("/") + path

    def pprof(self, name: str) -> str:
        """The path of one pprof endpoint; `name` "" is the index page (with its trailing slash)."""
        return self.pprof_path.rstrip("/") + "/" + name


def redact_url(url: str) -> str:
    """`url` with any user:password@ removed, so it can go into messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclasses.dataclass(frozen=True)
class Limits:
    """How long and how much the scraper will wait for and read from one target. Defaults and why:

    - `connect_timeout_seconds=3`: a pod on the cluster network answers a SYN in milliseconds; 3 s
      survives a SYN retransmit (1 s) and still lets one sweep over many dead pods finish quickly.
    - `read_timeout_seconds=10`: the longest silence between two reads. heap?debug=1 stops the world
      once for ReadMemStats; even a large, busy heap answers well inside 10 s.
    - `total_timeout_seconds=30`: the bound on one whole request (connect, headers, body, parsing), so a
      target trickling one byte at a time cannot hold a scrape forever; equals the default interval.
      Requests with `seconds=N` (CPU or delta profiles) get N on top, since the target is meant to wait.
    - `max_text_bytes=32 MiB`: index, heap?debug=1, goroutine?debug=1 and /metrics. A heap?debug=1 with
      tens of thousands of stack records is a few MiB; 32 MiB is ten times that and still cheap to stream.
    - `max_profile_bytes=64 MiB`: a compressed proto; real heap profiles are KiB to a few MiB.
    - `max_decompressed_bytes=512 MiB`: the gunzipped proto; protos compress about 5-10x, so this allows
      the largest real profile and stops a gzip bomb long before it hurts the operator.
    - `cpu_profile_seconds=10`: what `profile?seconds=N` asks for when the caller does not say; long
      enough to see a hot path, short enough to keep the overhead small.
    - `max_stacks_bytes=64 MiB`: goroutine?debug=2; Go itself truncates its dump at 64 MB. Past the cap
      the scraper keeps what it read and marks it truncated, because partial stacks are still evidence.

    Pool sizing (not per request):
    - `max_connections_per_target=8`: connections open to one target (its host and port). A sample's requests go
      one after the other over one connection (a probe a rule asks for adds one), a capture uses a few; further requests wait for a free one (inside the total timeout) rather
      than open ever more sockets to one pod.
    - `keepalive_expiry_seconds=75`: longer than the usual interval (30 s) so each target's connection
      is reused between scrapes instead of reconnecting every time.
    - `metrics_reprobe_seconds=600`: how long a target without /metrics goes before it is asked again.
    """

    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 10.0
    total_timeout_seconds: float = 30.0
    max_text_bytes: int = 32 * MiB
    max_profile_bytes: int = 64 * MiB
    max_decompressed_bytes: int = 512 * MiB
    cpu_profile_seconds: int = 10
    max_stacks_bytes: int = 64 * MiB
    max_connections_per_target: int = 8
    keepalive_expiry_seconds: float = 75.0
    metrics_reprobe_seconds: float = 600.0
    parse_workers: int = 2
    parse_memory_bytes: int = 512 * MiB
    parse_deadline_seconds: float = 20.0
    max_profile_samples: int = 200_000
    max_goroutine_groups: int = 10_000
    max_inline_parse_bytes: int = 1 * MiB
    max_inline_parse_seconds: float = 2.0
    max_line_bytes: int = 16 * 1024
    max_baseline_bytes: int = 2 * MiB
    max_buffered_bytes: int = 256 * MiB

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"Limits.{field.name} must be positive")

    @classmethod
    def for_memory_limit(cls, memory_bytes: int | None, **overrides: float) -> Limits:
        """Budgets sized from the operator's own memory limit (None: the defaults, for a laptop).

        A parse worker may use a quarter of it (two workers: half), a decompressed profile a sixteenth of
        that (decoding costs ~25x in Python objects, measured in docs/security.md), texts a 32nd of the limit
        up to 32 MiB, a baseline profile a 512th up to 2 MiB. For the chart's 1 GiB: 256 MiB per worker,
        16 MiB decompressed, 32 MiB texts, 2 MiB baselines."""
        if memory_bytes is None:
            return cls(**overrides)  # type: ignore[arg-type]

        def clamp(value: int, low: int, high: int) -> int:
            return max(low, min(high, value))

        worker = clamp(memory_bytes // 4, 128 * MiB, 2048 * MiB)
        sized: dict[str, float] = {
            "parse_memory_bytes": worker,
            "max_decompressed_bytes": clamp(worker // 16, 4 * MiB, 128 * MiB),
            "max_text_bytes": clamp(memory_bytes // 32, 4 * MiB, 32 * MiB),
            "max_stacks_bytes": clamp(memory_bytes // 16, 8 * MiB, 64 * MiB),
            "max_baseline_bytes": clamp(memory_bytes // 512, 512 * 1024, 2 * MiB),
            "max_buffered_bytes": clamp(memory_bytes // 4, 64 * MiB, 2048 * MiB),
        }
        sized.update(overrides)
        return cls(**sized)  # type: ignore[arg-type]

    @property
    def parse_budget(self) -> ParseBudget:
        """What one parse in a worker may hold."""
        return ParseBudget(
            max_decompressed_bytes=self.max_decompressed_bytes,
            max_profile_samples=self.max_profile_samples,
            max_goroutine_groups=self.max_goroutine_groups,
        )

    @property
    def pool_limits(self) -> PoolLimits:
        """The parse workers' limits."""
        return PoolLimits(
            workers=self.parse_workers,
            memory_bytes=self.parse_memory_bytes,
            deadline_seconds=self.parse_deadline_seconds,
        )
