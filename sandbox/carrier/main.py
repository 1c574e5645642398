"""``python -m sandbox.carrier.main``: one carrier as its own process.

    python -m sandbox.carrier.main --name swift --port 9201 --secret whsec_c --time-scale 3600 \\
        --webhook-url http://127.0.0.1:8080/v1/webhooks/carriers/swift
"""

import argparse
import logging

import msgspec

from sandbox import cli
from sandbox.carrier.app import create_app
from sandbox.carrier.config import CarrierFaults, CarrierSettings
from sandbox.carrier.tariff import Tariff
from sandbox.serving import serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sandbox.carrier.main",
        description="Run a parcel carrier sandbox (shipments, returns, return quotes, signed "
        "tracking events over scaled time, a ledger of shipments and events).",
    )
    cli.add_common_arguments(p, port=9201, name="carrier")
    clock = p.add_argument_group("time")
    clock.add_argument(
        "--event-interval-s",
        type=float,
        default=CarrierSettings.event_interval_s,
        help="carrier seconds between two scans of a parcel",
    )
    clock.add_argument(
        "--time-scale",
        type=float,
        default=CarrierSettings.time_scale,
        help="carrier seconds per real second (3600: an hour a second)",
    )
    prices = p.add_argument_group("tariff (minor units)")
    prices.add_argument("--currency", default=Tariff.currency)
    prices.add_argument("--first-weight-g", type=int, default=Tariff.first_weight_g)
    prices.add_argument("--first-weight-cost", type=int, default=Tariff.first_weight_cost)
    prices.add_argument("--additional-cost-per-kg", type=int, default=Tariff.additional_cost_per_kg)
    p.add_argument("--tracking-prefix", help="default: the first letters of --name")
    knobs = p.add_argument_group("carrier faults")
    knobs.add_argument("--exception-rate", type=cli.rate, default=0.0)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.time_scale <= 0 or args.event_interval_s < 0:
        raise SystemExit("--time-scale must be > 0 and --event-interval-s >= 0")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secret, generated = cli.secret(args)
    settings = CarrierSettings(
        event_interval_s=args.event_interval_s,
        time_scale=args.time_scale,
        tariff=Tariff(
            currency=args.currency.upper(),
            first_weight_g=args.first_weight_g,
            first_weight_cost=args.first_weight_cost,
            additional_cost_per_kg=args.additional_cost_per_kg,
        ),
        tracking_prefix=args.tracking_prefix,
    )
    knobs = cli.common_faults(args) | {"exception_rate": args.exception_rate}
    app = create_app(
        name=args.name,
        secret=secret,
        webhook_url=args.webhook_url,
        api_key=args.api_key,
        settings=settings,
        faults=msgspec.convert(knobs, CarrierFaults),
        retry=cli.retry_policy(args),
        idempotency_retention_s=args.idempotency_retention_s,
    )
    step_s = args.event_interval_s / args.time_scale

    def banner(url: str) -> str:
        lines = [
            f"carrier sandbox {args.name!r} listening on {url} "
            f"(a scan every {step_s:g} s; webhooks: {args.webhook_url or 'none'})"
        ]
        if generated:
            lines.append(f"  webhook secret: {secret}")
        return "\n".join(lines)

    serve(app, args.host, args.port, banner)


if __name__ == "__main__":
    main()
