"""Returns end to end: the logistics world (the real server, a payment sandbox and a carrier
sandbox process on loopback) with a returns policy file, and helpers to deliver an order, open
and read returns, and post hand-made signed tracking events of a return parcel."""

import json
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.logistics.lib import CARRIER, ShipWorld, tracking_event
from tests.server.e2e_lib import Response

LIGHTNING: dict[str, Any] = {
    "window_days": 7,
    "category_window_days": {"furniture": 30},
    "excluded_categories": ["fresh_food"],
    "lightning": {
        "max_order_amount": 100_000,
        "max_refund_amount": 50_000,
        "history_days": 30,
        "max_recent_returns": 3,
        "min_delivered_orders": 1,
        "excluded_categories": ["electronics"],
    },
}
"""The policy most tests run with: everything a 999 order of a plain SKU is, passes."""


def policy_file(directory: Path, policy: dict[str, Any] = LIGHTNING) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "returns.json"
    path.write_text(json.dumps(policy))
    return str(path)


def delivered_order(w: ShipWorld, lines: Sequence[tuple[int, int]] | None = None) -> str:
    """An order of the world's buyer, paid, shipped by the merchant, and delivered."""
    oid = w.paid_order(lines)
    shipped = w.ship(oid)
    assert shipped.status == 202, shipped
    w.wait_fulfilment(oid, "delivered")
    return oid


def open_return(
    w: ShipWorld,
    order_id: str,
    lines: Sequence[tuple[int, int]],
    *,
    token: str | None = None,
    key: str = "",
    reason: str = "changed my mind",
) -> Response:
    return w.srv.call(
        "POST",
        f"/v1/orders/{order_id}/returns",
        token=token or w.buyer,
        json={"lines": [{"sku": s, "quantity": q} for s, q in lines], "reason": reason},
        headers={"Idempotency-Key": key or f"return-{order_id}-{time.monotonic_ns()}"},
    )


def read_return(w: ShipWorld, return_id: int, token: str | None = None) -> Any:
    return w.srv.ok("GET", f"/v1/returns/{return_id}", token=token or w.buyer)


def wait_return(
    w: ShipWorld, return_id: int, done: Callable[[Any], bool], timeout_s: float = 15.0
) -> Any:
    """The return once ``done`` says so (read as its buyer)."""
    deadline = time.monotonic() + timeout_s
    seen: Any = None
    while time.monotonic() < deadline:
        seen = read_return(w, return_id)
        if done(seen):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"return {return_id} never got there: {seen}")


def review(
    w: ShipWorld, return_id: int, verdict: str, token: str | None = None, **body: Any
) -> Response:
    return w.srv.call(
        "POST",
        f"/v1/returns/{return_id}/{verdict}",
        token=token or w.merchant,
        json=body,
        headers={"Idempotency-Key": f"{verdict}-{return_id}-{time.monotonic_ns()}"},
    )


def refunds_at_provider(w: ShipWorld, order_id: str) -> list[Any]:
    """The payment sandbox's own ledger of refunds of the order's charge."""
    assert w.card is not None
    [charge] = w.card.charges_for(order_id)
    return [r for r in w.card.refunds() if r["payment_intent"] == charge["payment_intent"]]


def return_event(
    return_id: int, sequence: int, status: str, *, event_id: str, **extra: Any
) -> dict[str, Any]:
    """A carrier tracking event about the parcel back of return ``return_id`` (hand-made)."""
    event = tracking_event("0", 0, sequence, status, event_id=event_id, **extra)
    event["data"]["object"].update(kind="return", reference=f"return-{return_id}")
    return event


def carrier_faults(w: ShipWorld, **patch: object) -> None:
    """Change the carrier sandbox's fault knobs at run time (``POST /_sandbox/faults``)."""
    req = urllib.request.Request(
        w.carrier.url + "/_sandbox/faults",
        data=json.dumps(patch).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5):
        pass


def return_shipment(w: ShipWorld, return_id: int) -> str:
    """The carrier's id of the parcel back of return ``return_id``."""
    [shipment] = [
        s["id"]
        for s in w.carrier.ledger()["shipments"]
        if s["kind"] == "return" and s["reference"] == f"return-{return_id}"
    ]
    return str(shipment)


def delivered_at(w: ShipWorld, order_id: str, when: datetime, parcel: int = 1) -> None:
    """Hand-made scans that deliver parcel ``parcel`` of the order at ``when``: for a carrier
    that does not scan on its own (a long interval)."""
    [shipment] = [
        s["id"]
        for s in w.carrier.shipments_for(order_id)
        if s["reference"] == f"{order_id}-{parcel}"
    ]
    for n, status in enumerate(("picked_up", "in_transit", "out_for_delivery", "delivered"), 1):
        event = tracking_event(
            order_id,
            parcel,
            n,
            status,
            event_id=f"evt_{order_id}_{parcel}_{n}",
            shipment=shipment,
            occurred_at=when.astimezone(UTC).isoformat(),
        )
        assert w.webhook(event).status == 200


__all__ = ["CARRIER", "LIGHTNING", "policy_file"]
