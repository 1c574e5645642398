"""A short flash sale on the embedded core: reserve, confirm, expire, and mint order IDs.

Run with ``python -m pyorder.demo`` (or ``bash scripts/demo.sh`` on a fresh machine).
"""

import argparse
import time

import numpy as np

from pyorder.ids import OrderIdGenerator, decode_order_id
from pyorder.inventory import Inventory, MatchPolicy, ReserveStatus

NORTH, SOUTH = 1, 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buyers", type=int, default=100_000, help="buyers racing for the hot SKU")
    parser.add_argument("--stock", type=int, default=500, help="units of the hot SKU")
    args = parser.parse_args(argv)

    inv = Inventory()
    east = inv.add_warehouse()  # warehouse 0 exists from the start: call it "west"
    inv.set_region(NORTH, [east, 0])
    inv.set_region(SOUTH, [0, east])
    hot = inv.add_sku({0: args.stock // 2, east: args.stock - args.stock // 2}, limit_per_buyer=1)
    mug = inv.add_sku({0: 3, east: 50})
    ids = OrderIdGenerator(node=1)

    print(f"flash sale: {args.buyers:,} buyers, {args.stock} units, at most 1 per buyer")
    buyers = np.arange(1, args.buyers + 1, dtype=np.uint64)
    regions = np.where(buyers % 2 == 0, NORTH, SOUTH).astype(np.uint32)
    started = time.perf_counter()
    out = inv.reserve_batch(
        np.full(args.buyers, hot, dtype=np.uint32),
        np.ones(args.buyers, dtype=np.uint32),
        buyers=buyers,
        regions=regions,
    )
    won = out.status == ReserveStatus.OK
    order_ids = ids.next_ids(int(won.sum()))
    elapsed = time.perf_counter() - started
    print(f"  {int(won.sum())} reserved, {int((~won).sum()):,} refused, in {elapsed * 1e3:.1f} ms")
    print(f"  first order IDs: {[int(i) for i in order_ids[:3]]}")
    unix_ms, node, seq, _ = decode_order_id(int(order_ids[0]))
    print(f"  order {int(order_ids[0])}: node {node}, sequence {seq}, minted at unix ms {unix_ms}")
    print(f"  hot SKU now: {inv.stock(hot)}")

    paid = out.reservation[won][: int(won.sum()) * 9 // 10]
    inv.confirm_batch(paid)
    now = int(time.time() * 1000)
    expired = inv.expire_due(now_ms=now + 16 * 60 * 1000)
    print(f"  90% paid; the other {len(expired)} expired after 15 minutes and returned their units")
    print(f"  hot SKU now: {inv.stock(hot)}")

    order = inv.reserve_order([(hot, 1), (mug, 5)], buyer=10**9, region=SOUTH)
    lines = inv.reservation(order).lines
    print(
        f"one order for the hot SKU and 5 mugs from the south: lines (sku, warehouse, qty) {lines}"
    )
    split = inv.reserve_order(
        [(mug, 2)], buyer=10**9 + 1, region=SOUTH, policy=MatchPolicy.NEAREST_PER_LINE
    )
    print(f"  and 2 more mugs: served by warehouse {inv.reservation(split).lines[0][1]}")
    inv.check_invariants()
    print("invariants hold: on_hand = available + reserved + sold for every SKU and warehouse")


if __name__ == "__main__":
    main()
