"""What risk control adds per order on the batch path of the order book, in the same run.

One in-process ``OrderBook`` (the Rust core: parse, price, reserve, ID, stage, render) takes
batch bodies of ``--batch`` orders, each with a client context, from ``--buyers`` buyers
spread over as many devices, IPs and addresses, three ways, interleaved round by round so the
machine's noise falls on all alike:

* ``off``: no risk engine (the platform without ``--risk``);
* ``rules``: the engine without a model (velocity features, lists, rules);
* ``model``: the engine with the shipped model (features, score, reasons, decision): what
  ``--risk`` runs.

The policy has the default thresholds, 20 platform rules and lists of 1,000 values per kind,
so that its cost is in the figure. Each round places ``--orders`` orders per way (restocked,
rows cleared between rounds); the figure is the median over rounds of µs per order, and the
difference with ``off`` is what risk control costs. The decisions are staged (an allowed
order's in the order, the others as rows) but not written (``loadtest/http_bench.py`` with
``--server-arg=--risk`` measures the whole path).

    python benchmarks/risk_intake.py
    python benchmarks/risk_intake.py --orders 100000 --rounds 9 --buyers 200000
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from pyorder._core import Inventory, OrderBook, OrderIdGenerator, OrderRows, RiskEngine, RiskModel
from pyorder.auth import buyer_number
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import DEFAULT_MODEL, set_policy
from pyorder.risk.policy import ListKind, Policy
from pyorder.risk.rules import Action, Rule

T0 = 1_800_000_000_000


def policy() -> Policy:
    rules = tuple(
        (Rule(f"r{i}", Action.REVIEW, f"device_buyers_24h >= {10 + i} and agent_class == 3"), None)
        for i in range(20)
    )
    lists = {kind: frozenset(f"{kind}-{i}" for i in range(1000)) for kind in ListKind}
    return Policy(FEATURE_NAMES, rules=rules, allow=lists, block=lists)


def book(engine: RiskEngine | None, skus: int, node: int = 1) -> tuple[Inventory, OrderBook]:
    """An order book of ``skus`` SKUs at 19.99 CNY of merchant ``merchant:m`` (a billion units
    each, warehouse 0, region ``north``), its order ids of node ``node``."""
    inventory = Inventory()
    inventory.add_warehouse()
    inventory.set_region(0, [0])
    b = OrderBook(inventory, OrderIdGenerator(node), 900_000)
    b.set_region("north", 0)
    for _ in range(skus):
        sku = inventory.add_sku({0: 10**9})
        b.set_sku(sku, 1_999, "CNY", "merchant:m")
    b.set_risk(engine)
    return inventory, b


def bodies(orders: int, batch: int, buyers: int, skus: int) -> list[tuple[bytes, str]]:
    """Batch bodies, each of one buyer's orders (the API's batch is one buyer's)."""
    out = []
    for start in range(0, orders, batch):
        who = (start // batch * 7919) % buyers
        body = {
            "orders": [
                {
                    "lines": [{"sku": (start + k) % skus, "quantity": 1}],
                    "address": {
                        "name": "A",
                        "line1": f"{(who * 31 + k) % buyers} Road",
                        "city": "Hangzhou",
                        "region": "north",
                    },
                    "context": {"device_id": f"d{(who + k) % buyers}"},
                }
                for k in range(min(batch, orders - start))
            ]
        }
        out.append((orjson.dumps(body), f"b{who}"))
    return out


def run(b: OrderBook, work: list[tuple[bytes, str]], at: int) -> float:
    rows = OrderRows()
    numbers = {buyer: buyer_number(buyer) for _, buyer in work}
    start = time.perf_counter()
    for i, (body, buyer) in enumerate(work):
        client = (f"10.{i % 250}.{(i // 250) % 250}.1", "north", 1, None)
        status, _, created, _ = b.place_batch(body, buyer, numbers[buyer], rows, at, client)
        if status != 200 or not created:
            raise RuntimeError(f"the batch was refused: {status}, {created} created")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--buyers", type=int, default=100_000)
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    model = RiskModel.from_text(DEFAULT_MODEL.read_text(encoding="utf-8"))
    rules_only, scored = RiskEngine(None), RiskEngine(model)
    for engine in (rules_only, scored):
        set_policy(engine, policy())
    ways = {
        "off": book(None, args.skus),
        "rules": book(rules_only, args.skus),
        "model": book(scored, args.skus),
    }
    work = bodies(args.orders, args.batch, args.buyers, args.skus)
    times: dict[str, list[float]] = {w: [] for w in ways}
    for r in range(args.rounds):
        for way, (_, b) in ways.items():
            # A fresh minute each round: the windows move on as in a long sale.
            times[way].append(run(b, work, T0 + r * 60_000) / args.orders * 1e6)
    base = statistics.median(times["off"])
    print(f"{args.orders:,} orders per round in batches of {args.batch}, {args.buyers:,} buyers,")
    print(f"{args.rounds} rounds, medians (µs per order):")
    for way in ways:
        m = statistics.median(times[way])
        print(f"  {way:>5}: {m:6.2f} µs/order  (+{m - base:5.2f} µs over off, {m / base:4.2f}x)")
    print("decisions (allow, review, block, failures):", scored.counts)
    print("tracked keys per kind:", scored.tracked_keys())


if __name__ == "__main__":
    main()
