"""``python -m pyorder.risk.sim --seed N --prevalence 0.005 --days 14 --out DIR``: generate a
data set and write it into DIR (``pyorder.risk.sim.store`` describes the files)."""

import argparse
import time
from collections import Counter
from pathlib import Path

from pyorder.risk.sim.config import SimConfig
from pyorder.risk.sim.simulate import simulate
from pyorder.risk.sim.store import write


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
    print(
        f"{orders} orders ({sum(labels.fraud)} fraud), {len(simulation.events) - orders} payments "
        f"over {config.days} days: generated in {generated - began:.1f} s, written in {written - generated:.1f} s"
    )
    for scenario, count in sorted(Counter(labels.scenario).items()):
        print(f"  {scenario:18} {count}")


if __name__ == "__main__":
    main()
