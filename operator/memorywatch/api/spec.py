"""A MemoryWatch's spec, read into frozen values, with one message per problem naming the field.

The API server already enforces the CRD schema (types, bounds, CEL rules) and fills in defaults; this module
applies the same defaults again (a spec may come from a file or an older CRD) and checks what the schema cannot
express, such as durations being real durations. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from memorywatch.api.notify_config import NotifySpec, parse_notify
from memorywatch.api.rules_config import ConfigError, default_rules, rules_from_dicts
from memorywatch.api.units import UnitError, parse_duration, parse_quantity
from memorywatch.rules.model import RuleSpec

DEFAULT_PROFILES = ("heap", "goroutine", "goroutine-stacks")
#: The least spec.action.cooldown (the CRD enforces the same floor): a rule that always holds cannot act in a loop.
MIN_ACTION_COOLDOWN_SECONDS = 60.0


class SpecError(ValueError):
    """The spec is not usable; `messages` holds one line per problem, each naming the field."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = tuple(messages)
        super().__init__("; ".join(self.messages))


@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Selector:
    match_labels: Mapping[str, str]
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes label-selector semantics (an empty selector is refused by the CRD, not matched here)."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for r in self.match_expressions:
            present = r.key in labels
            if r.operator == "In" and (not present or labels[r.key] not in r.values):
                return False
            if r.operator == "NotIn" and present and labels[r.key] in r.values:
                return False
            if r.operator == "Exists" and not present:
                return False
            if r.operator == "DoesNotExist" and present:
                return False
        return True

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        parts += [
            f"{r.key} {r.operator} ({','.join(r.values)})" if r.values else f"{r.key} {r.operator}"
            for r in self.match_expressions
        ]
        return ",".join(parts)


@dataclasses.dataclass(frozen=True)
class TLSSpec:
    ca_secret: SecretKeyRef | None
    insecure_skip_verify: bool
    server_name: str | None


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    port: int | str
    path: str = "/debug/pprof"
    scheme: str = "http"
    access: str = "Direct"
    tls: TLSSpec | None = None
    bearer_token_secret: SecretKeyRef | None = None
    metrics_path: str | None = "/metrics"
    allow_insecure_bearer_token: bool = False


@dataclasses.dataclass(frozen=True)
class S3Spec:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    credentials_secret: str | None
    access_key_id_key: str
    secret_access_key_key: str
    force_path_style: bool


@dataclasses.dataclass(frozen=True)
class CaptureSpec:
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    cooldown_seconds: float = 1800.0
    cpu_seconds: int = 10
    max_profile_bytes: int = 64 * 2**20
    s3: S3Spec | None = None
    #: This watch's own retention on the operator's volume, within the chart's (None: the chart's).
    retention_max_age_seconds: float | None = None
    retention_max_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    type: str = "None"  # None | EvictPod | RolloutRestart | Scale
    scale_step: int = 1
    scale_max_replicas: int | None = None
    cooldown_seconds: float = 3600.0
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class WatchSpec:
    selector: Selector
    endpoint: EndpointSpec
    interval_seconds: float
    rules: tuple[RuleSpec, ...]
    capture: CaptureSpec
    action: ActionSpec
    suspend: bool = False
    notify: NotifySpec | None = None  # spec.notify (api/notify_config.py)


class _Reader:
    """Collects every problem instead of stopping at the first, so a user fixes them in one go."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def duration(self, path: str, value: Any, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except UnitError as e:
            self.problems.append(f"{path}: {e}")
            return default

    def quantity(self, path: str, value: Any, default: int) -> int:
        if value is None:
            return default
        try:
            return int(parse_quantity(value))
        except UnitError as e:
            self.problems.append(f"{path}: {e}")
            return default

    def secret(self, path: str, ref: Any, default_key: str) -> SecretKeyRef | None:
        if ref is None:
            return None
        if not isinstance(ref, Mapping) or not ref.get("name"):
            self.problems.append(f"{path}.name is required: the name of a Secret in this namespace")
            return None
        return SecretKeyRef(name=str(ref["name"]), key=str(ref.get("key") or default_key))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_spec(spec: Mapping[str, Any]) -> WatchSpec:
    """Read a MemoryWatch spec; raises SpecError naming every bad field (`spec.endpoint.port is required`)."""
    r = _Reader()
    sel = _mapping(spec.get("selector"))
    labels = {str(k): str(v) for k, v in _mapping(sel.get("matchLabels")).items()}
    exprs = tuple(
        Requirement(
            str(e.get("key", "")), str(e.get("operator", "")), tuple(str(v) for v in e.get("values") or ())
        )
        for e in sel.get("matchExpressions") or ()
        if isinstance(e, Mapping)
    )
    if not labels and not exprs:
        r.problems.append("spec.selector must select something: give matchLabels or matchExpressions")
    elif not labels and not any(e.operator in ("In", "Exists") for e in exprs):
        r.problems.append(
            "spec.selector must contain at least one positive match (a matchLabels entry, or a matchExpressions "
            "term with operator In or Exists): NotIn and DoesNotExist alone select nearly every pod"
        )
    ep = _mapping(spec.get("endpoint"))
    port = ep.get("port")
    if port in (None, ""):
        r.problems.append("spec.endpoint.port is required: the container port name or number serving pprof")
        port = 0
    tls_raw = ep.get("tls")
    tls = None
    if isinstance(tls_raw, Mapping):
        tls = TLSSpec(
            ca_secret=r.secret("spec.endpoint.tls.caSecretRef", tls_raw.get("caSecretRef"), "ca.crt"),
            insecure_skip_verify=bool(tls_raw.get("insecureSkipVerify", False)),
            server_name=tls_raw.get("serverName") or None,
        )
    metrics_path = ep.get("metricsPath", "/metrics")
    endpoint = EndpointSpec(
        port=port if isinstance(port, int) else str(port),
        path=str(ep.get("path") or "/debug/pprof"),
        scheme=str(ep.get("scheme") or "http"),
        access=str(ep.get("access") or "Direct"),
        tls=tls,
        bearer_token_secret=r.secret(
            "spec.endpoint.bearerTokenSecretRef", ep.get("bearerTokenSecretRef"), "token"
        ),
        metrics_path=str(metrics_path) if metrics_path else None,
        allow_insecure_bearer_token=bool(ep.get("allowInsecureBearerToken", False)),
    )
    if (
        endpoint.bearer_token_secret
        and endpoint.scheme != "https"
        and not endpoint.allow_insecure_bearer_token
    ):
        r.problems.append(
            "spec.endpoint.bearerTokenSecretRef needs spec.endpoint.scheme: https (the token would cross the "
            "network in clear text); set spec.endpoint.allowInsecureBearerToken: true to send it over http anyway"
        )
    interval = r.duration("spec.interval", spec.get("interval"), 30.0)
    if interval < 1:
        r.problems.append("spec.interval must be at least 1s")
    rules: tuple[RuleSpec, ...]
    raw_rules = spec.get("rules")
    if raw_rules is None:
        rules = tuple(default_rules())
    else:
        try:
            rules = tuple(rules_from_dicts(raw_rules))
        except ConfigError as e:
            r.problems.extend(f"spec.{m}" for m in e.messages)
            rules = ()
    cap = _mapping(spec.get("capture"))
    s3_raw = _mapping(_mapping(cap.get("storage")).get("s3"))
    s3 = None
    if s3_raw:
        creds = _mapping(s3_raw.get("credentialsSecretRef"))
        if not s3_raw.get("bucket"):
            r.problems.append("spec.capture.storage.s3.bucket is required")
        s3 = S3Spec(
            bucket=str(s3_raw.get("bucket", "")),
            prefix=str(s3_raw.get("prefix") or "").strip("/"),
            endpoint=s3_raw.get("endpoint") or None,
            region=s3_raw.get("region") or None,
            credentials_secret=creds.get("name") or None,
            access_key_id_key=str(creds.get("accessKeyIdKey") or "AWS_ACCESS_KEY_ID"),
            secret_access_key_key=str(creds.get("secretAccessKeyKey") or "AWS_SECRET_ACCESS_KEY"),
            force_path_style=bool(s3_raw.get("forcePathStyle", True)),
        )
    retention = _mapping(cap.get("retention"))
    capture = CaptureSpec(
        profiles=tuple(cap.get("profiles") or DEFAULT_PROFILES),
        cooldown_seconds=r.duration("spec.capture.cooldown", cap.get("cooldown"), 1800.0),
        cpu_seconds=int(cap.get("cpuSeconds") or 10),
        max_profile_bytes=r.quantity("spec.capture.maxProfileBytes", cap.get("maxProfileBytes"), 64 * 2**20),
        s3=s3,
        retention_max_age_seconds=r.duration("spec.capture.retention.maxAge", retention.get("maxAge"), 0.0)
        or None,
        retention_max_bytes=r.quantity("spec.capture.retention.maxBytes", retention.get("maxBytes"), 0)
        or None,
    )
    act = _mapping(spec.get("action"))
    scale = _mapping(act.get("scale"))
    action = ActionSpec(
        type=str(act.get("type") or "None"),
        scale_step=int(scale.get("step") or 1),
        scale_max_replicas=int(scale["maxReplicas"]) if scale.get("maxReplicas") is not None else None,
        cooldown_seconds=r.duration("spec.action.cooldown", act.get("cooldown"), 3600.0),
        dry_run=bool(act.get("dryRun", False)),
    )
    if act.get("cooldown") is not None and action.cooldown_seconds < MIN_ACTION_COOLDOWN_SECONDS:
        r.problems.append(
            f"spec.action.cooldown must be at least 1m (got {act.get('cooldown')}): the floor keeps an action "
            "from looping"
        )
    if action.type == "Scale" and action.scale_max_replicas is None:
        r.problems.append("spec.action.scale.maxReplicas is required when spec.action.type is Scale")
    notify = parse_notify(spec.get("notify"), r.problems)
    if r.problems:
        raise SpecError(r.problems)
    return WatchSpec(
        selector=Selector(labels, exprs),
        endpoint=endpoint,
        interval_seconds=interval,
        rules=rules,
        capture=capture,
        action=action,
        suspend=bool(spec.get("suspend", False)),
        notify=notify,
    )
