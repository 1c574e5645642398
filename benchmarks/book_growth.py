"""The Rust intake as the book of unpaid orders grows: the time of each ``place_batch`` call.

Every order placed waits for payment (15 minutes by default), held in the order book and in the
inventory's reservation table. At 150,000 orders/s those hold millions of entries within
seconds, and a hash table that doubles all at once stops one call for as long as it takes to
move every entry: that call's whole HTTP batch waits, and so does everything queued behind it.
This places 1,000-order batches (the load test's body, ``benchmarks/test_bench_intake.py``)
into one book until it holds ``--orders`` unpaid orders, and prints the median and the slowest
call per window, with the process's peak resident memory.

    python benchmarks/book_growth.py                     # 3,000,000 orders, windows of 500 calls
    python benchmarks/book_growth.py --orders 1000000 --window 250
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.test_bench_intake import BODY, NOW_MS, ORDERS, _book
from pyorder._core import OrderRows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3_000_000)
    parser.add_argument("--window", type=int, default=500, help="calls per printed line")
    args = parser.parse_args()
    book = _book()
    calls = max(1, args.orders // ORDERS)
    times: list[float] = []
    worst = 0.0
    print("| unpaid orders held | median call ms | slowest call ms | peak RSS MB |")
    print("|---|---|---|---|")
    for i in range(1, calls + 1):
        started = time.perf_counter()
        status, _, created, _ = book.place_batch(BODY, "bench", 7, OrderRows(), NOW_MS)
        times.append(time.perf_counter() - started)
        assert status == 200
        assert created == ORDERS
        if i % args.window == 0 or i == calls:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            worst = max(worst, max(times))
            print(
                f"| {i * ORDERS:,} | {1e3 * statistics.median(times):.2f} | "
                f"{1e3 * max(times):.1f} | {peak_mb:,.0f} |",
                flush=True,
            )
            times.clear()
    print(f"\nslowest call overall: {1e3 * worst:.1f} ms")


if __name__ == "__main__":
    main()
