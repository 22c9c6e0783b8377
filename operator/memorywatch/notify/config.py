"""The operator-wide notification limits as `memorywatch run` flags (the chart's notify.* values render them)."""

from __future__ import annotations

import argparse
import ipaddress

from memorywatch.notify.notifier import NotifyLimits


def add_notify_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("notifications (docs/review.md#notifications)")
    g.add_argument("--notify-disabled", action="store_true",
                   help="send no notification, whatever spec.notify says (Helm notify.enabled: false)")  # fmt: skip
    g.add_argument("--notify-queue-size", type=int, default=100,
                   help="notifications waiting, all watches together (Helm notify.queueSize)")  # fmt: skip
    g.add_argument("--notify-per-watch-queue", type=int, default=10,
                   help="notifications waiting for one watch (Helm notify.perWatchQueue)")  # fmt: skip
    g.add_argument("--notify-workers", type=int, default=4,
                   help="notifications posted at once; never two of one watch (Helm notify.workers)")  # fmt: skip
    g.add_argument("--notify-timeout", type=float, default=10.0,
                   help="seconds per HTTP attempt (Helm notify.timeoutSeconds)")  # fmt: skip
    g.add_argument("--notify-deadline", type=float, default=120.0,
                   help="seconds per notification, retries included (Helm notify.deadlineSeconds)")  # fmt: skip
    g.add_argument("--notify-attempts", type=int, default=5,
                   help="tries per notification (Helm notify.attempts)")  # fmt: skip
    g.add_argument("--notify-max-body-bytes", type=int, default=16 * 1024,
                   help="the largest notification body (Helm notify.maxBodyBytes)")  # fmt: skip
    g.add_argument("--notify-allow-http", action="store_true",
                   help="allow http:// sink URLs (Helm notify.allowHTTP); https only by default")  # fmt: skip
    g.add_argument("--notify-allowed-cidr", action="append", default=[],
                   help="a CIDR of non-public addresses a sink may resolve to; repeatable (Helm notify.allowedCIDRs)")  # fmt: skip


def limits_from_args(args: argparse.Namespace) -> NotifyLimits:
    """The limits, or ValueError naming the flag (and the Helm value) that is out of range."""
    checks = [
        ("--notify-queue-size", "notify.queueSize", args.notify_queue_size, 1, 10_000),
        ("--notify-per-watch-queue", "notify.perWatchQueue", args.notify_per_watch_queue, 1, 1000),
        ("--notify-workers", "notify.workers", args.notify_workers, 1, 64),
        ("--notify-timeout", "notify.timeoutSeconds", args.notify_timeout, 0.1, 60),
        ("--notify-deadline", "notify.deadlineSeconds", args.notify_deadline, 1, 3600),
        ("--notify-attempts", "notify.attempts", args.notify_attempts, 1, 20),
        ("--notify-max-body-bytes", "notify.maxBodyBytes", args.notify_max_body_bytes, 1024, 1 << 20),
    ]
    for flag, value_name, value, low, high in checks:
        if not low <= value <= high:
            raise ValueError(f"{flag} (Helm {value_name}) must be between {low} and {high}, got {value}")
    for cidr in args.notify_allowed_cidr:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as e:
            raise ValueError(f"--notify-allowed-cidr (Helm notify.allowedCIDRs): {cidr!r}: {e}") from None
    return NotifyLimits(
        queue_size=args.notify_queue_size,
        per_watch_queue=args.notify_per_watch_queue,
        workers=args.notify_workers,
        attempts=args.notify_attempts,
        connect_timeout_seconds=min(5.0, args.notify_timeout),
        request_timeout_seconds=args.notify_timeout,
        deadline_seconds=args.notify_deadline,
        max_body_bytes=args.notify_max_body_bytes,
        allow_http=args.notify_allow_http,
        allowed_cidrs=tuple(args.notify_allowed_cidr),
    )
