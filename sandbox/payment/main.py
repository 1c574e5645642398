"""``python -m sandbox.payment.main``: one payment provider as its own process.

    python -m sandbox.payment.main --name alipay --port 9101 --secret whsec_a --methods wallet \\
        --webhook-url http://127.0.0.1:8080/v1/webhooks/payments/alipay --decline-rate 0.05
"""

import argparse
import logging

import msgspec

from sandbox import cli
from sandbox.payment.app import create_app
from sandbox.payment.config import PaymentFaults, PaymentSettings
from sandbox.payment.methods import METHOD_TYPES, MethodType
from sandbox.serving import serve


def methods(text: str) -> tuple[MethodType, ...]:
    """``card,wallet`` (argparse type)."""
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHOD_TYPES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"methods are a comma list of {', '.join(METHOD_TYPES)}")
    return tuple(m for m in METHOD_TYPES if m in chosen)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sandbox.payment.main",
        description="Run a Stripe-like payment provider sandbox (PaymentIntents, refunds, "
        "signed webhooks, a ledger of what was charged).",
    )
    cli.add_common_arguments(p, port=9101, name="payments")
    p.add_argument("--methods", type=methods, default=METHOD_TYPES, help="e.g. card,wallet")
    p.add_argument(
        "--settle-ms", type=float, default=1000, help="how long a bank transfer stays processing"
    )
    p.add_argument(
        "--refund-settle-ms",
        type=float,
        default=200,
        help="how long a refund stays pending (0: settled within the call)",
    )
    knobs = p.add_argument_group("payment faults")
    knobs.add_argument("--decline-rate", type=cli.rate, default=0.0)
    knobs.add_argument("--refund-failure-rate", type=cli.rate, default=0.0)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    knobs = cli.common_faults(args) | {
        "decline_rate": args.decline_rate,
        "refund_failure_rate": args.refund_failure_rate,
    }
    secret, generated = cli.secret(args)
    app = create_app(
        name=args.name,
        secret=secret,
        webhook_url=args.webhook_url,
        api_key=args.api_key,
        settings=PaymentSettings(
            methods=args.methods,
            settle_s=args.settle_ms / 1000,
            refund_settle_s=args.refund_settle_ms / 1000,
        ),
        faults=msgspec.convert(knobs, PaymentFaults),
        retry=cli.retry_policy(args),
        idempotency_retention_s=args.idempotency_retention_s,
    )

    def banner(url: str) -> str:
        lines = [
            f"payment sandbox {args.name!r} listening on {url} "
            f"(methods: {', '.join(args.methods)}; webhooks: {args.webhook_url or 'none'})"
        ]
        if generated:
            lines.append(f"  webhook secret: {secret}")
        return "\n".join(lines)

    serve(app, args.host, args.port, banner)


if __name__ == "__main__":
    main()
