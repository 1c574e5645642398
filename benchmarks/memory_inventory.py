"""Memory of a big inventory: 1,000,000 SKUs and 1,000,000 open reservations in <= 256 MiB.

Run in a fresh process (it is one: ``python benchmarks/memory_inventory.py``). Resident memory
is read from ``/proc/self/status`` (VmRSS, and VmHWM for the peak) before the inventory exists,
after ``add_skus`` and after ``reserve_batch``; the input and result arrays are dropped before
each reading, so the growth is the inventory's own. Exit status 1 if the growth is over the
budget.

    python benchmarks/memory_inventory.py
    python benchmarks/memory_inventory.py --skus 1000 --reservations 1000 --budget-mib 256
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import numpy as np

from pyorder.inventory import Inventory, ReserveStatus

MIB = 1024 * 1024
T0 = 1_767_225_600_000


def status_mib(field: str) -> float:
    """A ``/proc/self/status`` field (kB) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=1_000_000)
    parser.add_argument("--reservations", type=int, default=1_000_000)
    parser.add_argument("--budget-mib", type=float, default=256.0)
    parser.add_argument("--shards", type=int, default=64)
    args = parser.parse_args(argv)

    gc.collect()
    before = status_mib("VmRSS")
    inv = Inventory(shards=args.shards)

    on_hand = np.full(args.skus, 10, dtype=np.int64)
    inv.add_skus(on_hand)
    del on_hand
    gc.collect()
    after_skus = status_mib("VmRSS")

    rng = np.random.default_rng(5)
    skus = rng.permutation(np.arange(args.reservations) % args.skus).astype(np.uint32)
    quantities = np.ones(args.reservations, dtype=np.uint32)
    buyers = rng.integers(0, 2**40, args.reservations).astype(np.uint64)
    result = inv.reserve_batch(skus, quantities, buyers=buyers, timeout_ms=15 * 60_000, now_ms=T0)
    granted = int(np.count_nonzero(result.status == ReserveStatus.OK))
    del skus, quantities, buyers, result
    gc.collect()
    after_reservations = status_mib("VmRSS")
    peak = status_mib("VmHWM")

    inv.check_invariants()
    growth = after_reservations - before
    print(
        f"SKUs: {args.skus:,}   open reservations: {inv.open_reservations:,} (of {args.reservations:,} asked)"
    )
    print(f"RSS before:              {before:8.1f} MiB")
    print(f"RSS after add_skus:      {after_skus:8.1f} MiB  (+{after_skus - before:.1f})")
    print(
        f"RSS after reserve_batch: {after_reservations:8.1f} MiB  "
        f"(+{after_reservations - after_skus:.1f})"
    )
    print(f"peak RSS (VmHWM):        {peak:8.1f} MiB")
    verdict = "ok" if growth <= args.budget_mib else "OVER BUDGET"
    print(
        f"inventory growth:        {growth:8.1f} MiB  (budget {args.budget_mib:.0f} MiB: {verdict})"
    )
    return 0 if growth <= args.budget_mib and granted == inv.open_reservations else 1


if __name__ == "__main__":
    sys.exit(main())
