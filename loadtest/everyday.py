"""The everyday-shopping scenario's setup and check (``loadtest/scenario.py everyday``).

Setup: a carrier sandbox that scans a parcel every ``--scan-interval-s`` (so an order is
delivered seconds after it is paid), two warehouses serving one region, ``--catalogue`` SKUs
from four merchants with ``--stock`` units each, spread over both warehouses, and ``--buyers``
buyer tokens. The server runs with ``--auto-ship`` and an unpaid order expires after
``--expire-after-s``.

The check, once payments, expiries, deliveries and refunds have settled: every order that got
a 201 exists with the status its buyer's actions imply (paid, cancelled, expired); for every
SKU, on_hand = available + reserved + sold, nothing is reserved any more, and the units sold
are exactly the units of the paid orders' lines on it less the units returned to stock; the
payment providers charged each paid order exactly once, for its total, and nothing else
(refunds: only of returned orders, never more than the charge); the carrier booked one parcel
per serving warehouse of each paid order and nothing for any other order.
"""

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click_to_paid import SECRET, http
from http_bench import free_port

ROOT = Path(__file__).resolve().parents[1]
REGION = "everyday-east"
MERCHANTS = 4
Json = dict[str, Any]


@dataclass
class Carrier:
    name: str = "swift"
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, webhook_url: str, scan_interval_s: float) -> list[str]:
        return [
            sys.executable,
            *("-m", "sandbox.carrier.main", "--port", str(self.port), "--name", self.name),
            *("--secret", SECRET, "--webhook-url", webhook_url),
            *("--event-interval-s", str(scan_interval_s), "--time-scale", "1"),
        ]

    def spec(self) -> str:
        return f"name={self.name},url={self.url},secret={SECRET}"


def seed(
    url: str, data_dir: Path, stock: int, catalogue: int, buyers: int
) -> tuple[list[int], list[str], str]:
    """The SKUs, the buyers' tokens, and an admin token."""
    sys.path.insert(0, str(ROOT))
    from pyorder.auth import Role, TokenIssuer, load_or_create_secret

    issuer = TokenIssuer(load_or_create_secret(data_dir))
    admin = issuer.mint(Role.ADMIN, "everyday")
    merchants = [issuer.mint(Role.MERCHANT, f"shop-{m}") for m in range(MERCHANTS)]
    warehouses = [
        int(
            http(url + "/v1/warehouses", "POST", {"name": f"dc-{n}", "regions": [REGION]}, admin)[
                "id"
            ]
        )
        for n in range(2)
    ]
    skus = []
    for i in range(catalogue):
        near, far = warehouses[i % 2], warehouses[1 - i % 2]
        body = {
            "title": f"everyday item {i}",
            "price": 500 + 37 * (i % 400),
            "currency": "CNY",
            "stock": [
                {"warehouse": near, "units": stock - stock // 3},
                {"warehouse": far, "units": stock // 3},
            ],
        }
        skus.append(int(http(url + "/v1/skus", "POST", body, merchants[i % MERCHANTS])["id"]))
    tokens = [issuer.mint(Role.BUYER, f"everyday-buyer-{i}") for i in range(buyers)]
    return skus, tokens, admin


RETURN_AT_REST = {"in_review", "rejected", "booking_failed", "pickup_failed"}
"""Return statuses that move no stock by themselves (a refunded one rests once restocked)."""


def returns_of(url: str, admin: str, order_id: str) -> list[Json]:
    found: list[Json] = http(f"{url}/v1/orders/{order_id}/returns", token=admin)["returns"]
    return found


def settle(url: str, admin: str, fates: dict[str, str], deadline_s: float) -> dict[str, Json]:
    """Wait until every order is where its buyer's actions lead (paid, cancelled, expired) and
    every return opened is at rest (refunded and its units back in stock, in review, rejected,
    or refused by the carrier), at most ``deadline_s``; the orders as read last."""
    want = {"pay": "paid", "cancel": "cancelled", "abandon": "expired"}
    stop = time.monotonic() + deadline_s
    orders: dict[str, Json] = {}
    todo = set(fates)
    while True:
        for oid in list(todo):
            order = http(f"{url}/v1/orders/{oid}", token=admin)
            orders[oid] = order
            if order["status"] != want.get(fates[oid].split("+")[0], order["status"]):
                continue
            if fates[oid].endswith("+returned") and not all(
                r["status"] in RETURN_AT_REST or r["restocked_at"]
                for r in returns_of(url, admin, oid)
            ):
                continue
            todo.discard(oid)
        if not todo or time.monotonic() > stop:
            return orders
        time.sleep(0.5)


def check(
    url: str,
    admin: str,
    skus: list[int],
    fates: dict[str, str],
    orders: dict[str, Json],
    payment_ledgers: list[Json],
    carrier_ledger: Json,
    returns_of: Callable[[str], list[Json]] | None = None,
) -> Json:
    """The run against the server's stock and orders and the sandboxes' own ledgers."""
    problems: list[str] = []
    want = {"pay": "paid", "cancel": "cancelled", "abandon": "expired"}
    statuses: Counter[str] = Counter()
    sold_expected: Counter[int] = Counter()
    for oid, order in orders.items():
        statuses[order["status"]] += 1
        fate = fates[oid].split("+")[0]
        if fate in want and order["status"] != want[fate]:
            problems.append(f"order {oid} ({fate}) is {order['status']}, not {want[fate]}")
        if order["status"] == "paid":
            for line in order["lines"]:
                sold_expected[int(line["sku"])] += int(line["quantity"])
    restocked: Counter[int] = Counter()
    if returns_of is not None:
        for oid, fate in fates.items():
            if fate.endswith("+returned"):
                for ret in returns_of(oid):
                    if ret["restocked_at"]:
                        for line in ret["lines"]:
                            restocked[int(line["sku"])] += int(line["quantity"])
    reserved = 0
    for sku in skus:
        s = http(f"{url}/v1/skus/{sku}", token=admin)["stock"]
        reserved += s["reserved"]
        if s["on_hand"] != s["available"] + s["reserved"] + s["sold"]:
            problems.append(f"SKU {sku}: stock not conserved: {s}")
        if s["reserved"] + s["sold"] > s["on_hand"]:
            problems.append(f"SKU {sku}: oversold: {s}")
        if s["sold"] != sold_expected[sku] - restocked[sku]:
            problems.append(
                f"SKU {sku}: {s['sold']} sold, the paid orders hold"
                f" {sold_expected[sku]} less {restocked[sku]} returned"
            )
    if reserved:
        problems.append(f"{reserved} units still reserved after every order settled")
    problems += _check_money(orders, payment_ledgers)
    problems += _check_parcels(orders, carrier_ledger)
    refunded = sum(
        int(r["amount"])
        for led in payment_ledgers
        for r in led["refunds"]
        if r["status"] == "succeeded"
    )
    return {
        "ok": not problems,
        "orders_created": len(orders),
        "statuses": dict(statuses),
        "returns_opened": sum(f.endswith("+returned") for f in fates.values()),
        "units_sold": sum(sold_expected.values()) - sum(restocked.values()),
        "charges": sum(len(led["charges"]) for led in payment_ledgers),
        "refunded": refunded,
        "parcels": len([s for s in carrier_ledger["shipments"] if s.get("kind") == "outbound"]),
        "problems": problems[:20],
    }


def _check_money(orders: dict[str, Json], ledgers: list[Json]) -> list[str]:
    problems: list[str] = []
    charged: defaultdict[str, list[int]] = defaultdict(list)
    refunded: Counter[str] = Counter()
    for led in ledgers:
        for c in led["charges"]:
            charged[str(c.get("metadata", {}).get("order_id", ""))].append(int(c["amount"]))
        for r in led["refunds"]:
            if r["status"] != "failed":
                refunded[str(r.get("metadata", {}).get("order_id", ""))] += int(r["amount"])
    for oid, amounts in charged.items():
        order = orders.get(oid)
        if order is None:
            problems.append(f"a charge for order {oid!r}, which no buyer got a 201 for")
        elif len(amounts) > 1:
            problems.append(f"order {oid} charged {len(amounts)} times: {amounts}")
        elif order["status"] == "paid" and amounts[0] != order["total"]:
            problems.append(f"order {oid} charged {amounts[0]}, its total is {order['total']}")
        elif order["status"] != "paid" and refunded[oid] != amounts[0]:
            problems.append(f"order {oid} is {order['status']} but charged and not refunded")
    for oid, order in orders.items():
        if order["status"] == "paid" and oid not in charged:
            problems.append(f"order {oid} is paid but no provider charged it")
        if refunded[oid] > sum(charged.get(oid, [])):
            problems.append(f"order {oid}: refunded {refunded[oid]}, more than charged")
    return problems


def _check_parcels(orders: dict[str, Json], ledger: Json) -> list[str]:
    problems: list[str] = []
    parcels: Counter[str] = Counter()
    for s in ledger["shipments"]:
        if s.get("kind", "outbound") == "outbound":
            parcels[str(s.get("metadata", {}).get("order_id", ""))] += 1
    for oid, n in parcels.items():
        order = orders.get(oid)
        if order is None or order["status"] != "paid":
            problems.append(f"{n} parcels booked for order {oid}, which is not paid")
        elif n != len({line["warehouse"] for line in order["lines"]}):
            problems.append(f"order {oid}: {n} parcels for its warehouses")
    return problems
