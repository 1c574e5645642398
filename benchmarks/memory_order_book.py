"""Memory of orders awaiting payment: the order book holding 1,000,000 pending orders.

A flash sale leaves every unpaid order pending (its units held) until its payment deadline,
15 minutes by default: at 100k orders/s that is tens of millions of orders. This places
``--orders`` one-line orders through ``OrderBook.place_batch`` in bodies of 1,000 (the load
test's orders), drops each batch's staged rows as a commit does, and reads resident memory from
``/proc/self/status``: the growth is the order book's pending orders plus their inventory
reservations (and the allocator's share); the records' own bytes are printed beside it.

    python benchmarks/memory_order_book.py
    python benchmarks/memory_order_book.py --orders 100000
"""

from __future__ import annotations

import argparse
import gc
import sys

import orjson

from benchmarks.memory_inventory import status_mib
from benchmarks.test_bench_intake import NOW_MS, SKUS, _book_and_inventory, _order
from pyorder._core import OrderRows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    book, inventory = _book_and_inventory()
    bodies = [
        orjson.dumps({"orders": [_order((b + i) % SKUS, b + i) for i in range(1000)]})
        for b in range(0, 10_000, 1000)
    ]
    gc.collect()
    before = status_mib("VmRSS")
    placed = 0
    while placed < args.orders:
        rows = OrderRows()
        status, _, created, _ = book.place_batch(
            bodies[(placed // 1000) % len(bodies)], f"buyer-{placed}", placed, rows, NOW_MS
        )
        assert status == 200
        placed += created
        del rows  # committed: the rows go, the pending orders stay
    gc.collect()
    after = status_mib("VmRSS")
    growth = after - before
    print(f"pending orders: {book.pending_count:,}")
    print(f"RSS before: {before:8.1f} MiB   after: {after:8.1f} MiB   growth: {growth:.1f} MiB")
    n = max(1, book.pending_count)
    print(f"per pending order: {growth * 1024 * 1024 / n:.0f} bytes")
    print(
        f"  of which the book's records: {book.pending_bytes / n:.0f} bytes,"
        f" the reservations (records, deadline index, states): {inventory.reservation_bytes / n:.0f}"
    )
    return 0 if book.pending_count == placed else 1


if __name__ == "__main__":
    sys.exit(main())
