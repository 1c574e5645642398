"""Command-line options every sandbox shares: where it listens, who it is, where its webhooks
go, how they are retried, and the common fault knobs."""

import argparse
import os
import secrets

from sandbox.faults import Faults
from sandbox.idempotency import DEFAULT_RETENTION_S
from sandbox.webhooks import RetryPolicy


def rate(text: str) -> float:
    """A probability 0..1 (argparse type)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not within 0..1")
    return value


def latency(text: str) -> int | list[int]:
    """``50`` (fixed) or ``20-200`` (a uniform range), milliseconds (argparse type)."""
    low, sep, high = text.partition("-")
    try:
        if not sep:
            return int(low)
        return [int(low), int(high)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use MS or LOW-HIGH") from None


def add_common_arguments(parser: argparse.ArgumentParser, *, port: int, name: str) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port, help=f"0: any free port (default {port})")
    parser.add_argument(
        "--name", default=name, help="the provider's name, in events and the ledger"
    )
    parser.add_argument(
        "--secret",
        default=os.environ.get("PYORDER_SANDBOX_SECRET"),
        help="the webhook signing secret shared with the platform (env PYORDER_SANDBOX_SECRET; "
        "default: a random one, printed at start)",
    )
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on API calls")
    parser.add_argument("--webhook-url", help="where events are POSTed (none: recorded only)")
    parser.add_argument(
        "--idempotency-retention-s",
        type=float,
        default=DEFAULT_RETENTION_S,
        help="how long first answers to Idempotency-Keys are replayed (default 24 h)",
    )
    hooks = parser.add_argument_group("webhook delivery")
    hooks.add_argument("--webhook-max-attempts", type=int, default=RetryPolicy.max_attempts)
    hooks.add_argument(
        "--webhook-backoff-ms",
        type=float,
        default=RetryPolicy.base_delay_s * 1000,
        help="wait after a first failure, doubled after each further one",
    )
    hooks.add_argument(
        "--webhook-max-backoff-ms", type=float, default=RetryPolicy.max_delay_s * 1000
    )
    hooks.add_argument("--webhook-timeout-s", type=float, default=RetryPolicy.timeout_s)
    hooks.add_argument(
        "--reorder-hold-ms",
        type=float,
        default=RetryPolicy.reorder_hold_s * 1000,
        help="how long a held-back event waits for one to overtake it",
    )
    faults = parser.add_argument_group("faults (change at run time: POST /_sandbox/faults)")
    faults.add_argument("--latency-ms", type=latency, default=0, metavar="MS|LOW-HIGH")
    faults.add_argument("--outage", choices=["none", "hang", "503"], default="none")
    faults.add_argument("--lost-response-rate", type=rate, default=0.0)
    faults.add_argument("--lost-response-mode", choices=["close", "500"], default="close")
    faults.add_argument("--malformed-response-rate", type=rate, default=0.0)
    faults.add_argument("--duplicate-webhook-rate", type=rate, default=0.0)
    faults.add_argument("--reorder-webhook-rate", type=rate, default=0.0)
    faults.add_argument("--seed", type=int, default=0, help="seeds every random fault")


def common_faults(args: argparse.Namespace) -> dict[str, object]:
    """The common knobs from parsed arguments, as fields of a ``Faults`` (sub)class."""
    return {name: getattr(args, name) for name in Faults.__struct_fields__}


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=args.webhook_max_attempts,
        base_delay_s=args.webhook_backoff_ms / 1000,
        max_delay_s=args.webhook_max_backoff_ms / 1000,
        timeout_s=args.webhook_timeout_s,
        reorder_hold_s=args.reorder_hold_ms / 1000,
    )


def secret(args: argparse.Namespace) -> tuple[str, bool]:
    """The webhook secret, and whether it was generated here (then it is printed)."""
    if args.secret:
        return str(args.secret), False
    return "whsec_" + secrets.token_hex(16), True
