"""``python -m pyorder.risk.sim --seed N --prevalence 0.005 --days 14 --out DIR``: generate a
data set and write it into DIR (``pyorder.risk.sim.store`` describes the files)."""

import argparse
import time
from pathlib import Path

from pyorder.risk.sim.config import SimConfig
from pyorder.risk.sim.simulate import simulate
from pyorder.risk.sim.store import write
from pyorder.risk.sim.summary import markdown, summary


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, generate, write, and print what was made."""
    defaults = SimConfig()
    parser = argparse.ArgumentParser(prog="python -m pyorder.risk.sim", description=__doc__)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--prevalence",
        type=float,
        default=defaults.prevalence,
        help="fraud share of orders, 0.001-0.02",
    )
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--shoppers", type=int, default=defaults.shoppers)
    parser.add_argument("--flash-sales-per-day", type=float, default=defaults.flash_sales_per_day)
    parser.add_argument(
        "--start-ms", type=int, default=defaults.start_ms, help="UTC ms of the window's start"
    )
    parser.add_argument(
        "--unlabelled",
        type=float,
        default=defaults.unlabelled,
        help="share of fraud never labelled",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write")
    args = parser.parse_args(argv)
    config = SimConfig(
        seed=args.seed,
        prevalence=args.prevalence,
        days=args.days,
        shoppers=args.shoppers,
        flash_sales_per_day=args.flash_sales_per_day,
        start_ms=args.start_ms,
        unlabelled=args.unlabelled,
    )
    began = time.perf_counter()
    simulation = simulate(config)
    generated = time.perf_counter()
    write(simulation, args.out)
    written = time.perf_counter()
    labels = simulation.labels
    orders = len(labels.fraud)
    arrivals = [at for fraud, at in zip(labels.fraud, labels.label_at_ms, strict=True) if fraud]
    within = sum(at is not None and at < config.end_ms for at in arrivals)
    never = sum(at is None for at in arrivals)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(
        f"{orders} orders ({len(arrivals)} fraud), {len(simulation.events) - orders} payments "
        f"over {config.days} days: generated in {generated - began:.1f} s, written in "
        f"{written - generated:.1f} s, {size / 1e6:.1f} MB\n"
        f"fraud labels: {within} arrive within the window, "
        f"{len(arrivals) - within - never} after it, {never} never\n"
    )
    print(markdown(summary(simulation)))


if __name__ == "__main__":
    main()
