"""One hot SKU hammered by threads: ``reserve_batch`` + ``confirm_batch`` until it sells out.

Every thread reserves batches of single-unit orders on the same SKU and confirms what it got,
until the stock is gone. Batch calls release the GIL, so the threads really meet on the SKU's
lock. The run checks that no unit is lost or sold twice: the units the threads confirmed add up
to the stock, and the SKU ends with everything sold, nothing reserved or available.

    python benchmarks/hot_sku.py                      # 1 and 2 threads, 2,000,000 units
    python benchmarks/hot_sku.py --units 10000 --batch 100 --threads 1,2,4

Exit status 1 if any run loses or adds units.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from pyorder.inventory import Inventory, ReserveStatus

T0 = 1_767_225_600_000
DAY_MS = 86_400_000


@dataclass
class Run:
    threads: int
    units: int
    seconds: float
    reserved: int  # units the threads were granted
    confirmed: int  # units the threads confirmed
    refused: int  # orders refused as out of stock
    sold: int  # what the SKU says it sold
    ok: bool


def hammer(units: int, threads: int, batch: int, shards: int) -> Run:
    inv = Inventory(shards=shards)
    inv.add_skus(np.full(shards, 1_000, dtype=np.int64))  # quiet neighbours
    sku = inv.add_sku(units)
    skus = np.full(batch, sku, dtype=np.uint32)
    ones = np.ones(batch, dtype=np.uint32)
    totals = [(0, 0, 0)] * threads  # (reserved, confirmed, refused) per thread
    barrier = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        reserved = confirmed = refused = 0
        barrier.wait()
        while True:
            result = inv.reserve_batch(skus, ones, timeout_ms=DAY_MS, now_ms=T0)
            ok = result.status == ReserveStatus.OK
            got = int(np.count_nonzero(ok))
            refused += batch - got
            if got == 0:
                break
            reserved += got
            statuses = inv.confirm_batch(result.reservation[ok], now_ms=T0)
            confirmed += int(np.count_nonzero(statuses == ReserveStatus.OK))
        totals[t] = (reserved, confirmed, refused)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - start

    reserved = sum(r for r, _, _ in totals)
    confirmed = sum(c for _, c, _ in totals)
    refused = sum(x for _, _, x in totals)
    level = inv.stock(sku)
    inv.check_invariants()
    ok = (
        reserved == confirmed == units
        and (level.on_hand, level.available, level.reserved, level.sold) == (units, 0, 0, units)
        and inv.open_reservations == 0
    )
    return Run(threads, units, seconds, reserved, confirmed, refused, level.sold, ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=2_000_000, help="stock of the hot SKU")
    parser.add_argument("--batch", type=int, default=1_000, help="orders per reserve_batch call")
    parser.add_argument("--threads", default="1,2", help="thread counts to run, comma-separated")
    parser.add_argument("--shards", type=int, default=64, help="Inventory(shards=...)")
    args = parser.parse_args(argv)

    runs = [hammer(args.units, int(n), args.batch, args.shards) for n in args.threads.split(",")]
    print(f"hot SKU: {args.units:,} units, batches of {args.batch:,} single-unit orders")
    print(
        f"{'threads':>7} {'seconds':>8} {'orders/s':>12} {'reserved':>10} {'confirmed':>10} "
        f"{'refused':>8} {'sold':>10}  check"
    )
    for r in runs:
        print(
            f"{r.threads:>7} {r.seconds:>8.3f} {r.confirmed / r.seconds:>12,.0f} "
            f"{r.reserved:>10,} {r.confirmed:>10,} {r.refused:>8,} {r.sold:>10,}  "
            f"{'ok' if r.ok else 'LOST OR EXTRA UNITS'}"
        )
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
