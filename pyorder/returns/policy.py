"""What may be returned: the checks a new return passes, as pure functions of the order, its
parcels, its earlier returns and refunds, and the ``ReturnsConfig``. Each refusal is a domain
error with a stable code (the API's ``error.code``).
"""

from collections.abc import Iterable, Mapping

from pyorder.kernel.clock import iso_ms
from pyorder.kernel.errors import Conflict, InvalidInput, InvalidState
from pyorder.logistics.model import Shipment, ShipmentStatus
from pyorder.orders.model import Order
from pyorder.payments.model import Refund, RefundStatus
from pyorder.returns.config import DAY_MS, ReturnsConfig
from pyorder.returns.model import HOLDS_UNITS, Return, ReturnLine

MAX_LINES = 100


class ReturnWindowClosed(Conflict):
    code = "return_window_closed"


class CategoryNotReturnable(InvalidInput):
    code = "category_not_returnable"


class ReturnExceedsPurchase(InvalidInput):
    code = "return_exceeds_purchase"


class NotDelivered(InvalidState):
    code = "not_delivered"


def merge_lines(lines: Iterable[tuple[int, int]]) -> dict[int, int]:
    """(sku, quantity) pairs as SKU -> units, the same SKU added up."""
    asked: dict[int, int] = {}
    for sku, quantity in lines:
        if quantity <= 0:
            raise InvalidInput("a returned quantity is at least 1", field="lines")
        asked[sku] = asked.get(sku, 0) + quantity
    if not asked or len(asked) > MAX_LINES:
        raise InvalidInput(f"a return has 1 to {MAX_LINES} SKUs", field="lines")
    return asked


Place = tuple[int, str]
"""(warehouse, merchant): one parcel back, reviewed by one merchant."""


def taken_units(
    order: Order, returns: Iterable[Return], refunds: Iterable[Refund]
) -> dict[tuple[int, int], int]:
    """(sku, warehouse) -> units of the order that cannot be returned again: those in returns
    that hold units, and those refunded by line outside a return (a refund by line names no
    warehouse: it takes the SKU's lines in order)."""
    taken: dict[tuple[int, int], int] = {}
    tied: set[int] = set()
    for r in returns:
        tied.add(r.refund_number)
        if r.status in HOLDS_UNITS:
            for li in r.lines:
                key = (li.sku, r.warehouse)
                taken[key] = taken.get(key, 0) + li.quantity
    for refund in refunds:
        if refund.number in tied or refund.status is RefundStatus.FAILED:
            continue
        for sku, quantity in refund.lines:
            left = quantity
            for line in order.lines:
                if line.sku == sku and left:
                    key = (sku, line.warehouse)
                    take = min(left, max(0, line.quantity - taken.get(key, 0)))
                    taken[key] = taken.get(key, 0) + take
                    left -= take
    return taken


def allocate(
    order: Order, asked: Mapping[int, int], taken: Mapping[tuple[int, int], int]
) -> dict[Place, dict[int, int]]:
    """The asked units by parcel and merchant: each SKU's units from its lines in order (a SKU
    may have been matched to several warehouses), never more than a line holds less what is
    ``taken``. Refuses a SKU not in the order and more units than are left."""
    parts: dict[Place, dict[int, int]] = {}
    room = dict(taken)
    for sku, quantity in asked.items():
        lines = [li for li in order.lines if li.sku == sku]
        if not lines:
            raise InvalidInput(f"order {order.id} has no line of SKU {sku}", field="lines")
        left = quantity
        for li in lines:
            key = (sku, li.warehouse)
            take = min(left, max(0, li.quantity - room.get(key, 0)))
            if take:
                room[key] = room.get(key, 0) + take
                part = parts.setdefault((li.warehouse, li.merchant), {})
                part[sku] = part.get(sku, 0) + take
                left -= take
        if left:
            can = quantity - left
            raise ReturnExceedsPurchase(
                f"cannot return {quantity} of SKU {sku}: {can} bought and not yet returned"
                " or refunded",
                sku=sku,
                left=can,
            )
    return parts


def delivered_parcel(order: Order, shipments: Iterable[Shipment], warehouse: int) -> Shipment:
    """The parcel from ``warehouse`` that counts (the newest not refused), if delivered."""
    live = [
        s for s in shipments if s.warehouse == warehouse and s.status is not ShipmentStatus.FAILED
    ]
    if not live or live[-1].status is not ShipmentStatus.DELIVERED:
        status = live[-1].status.value if live else "unfulfilled"
        raise NotDelivered(
            f"the parcel of order {order.id} from warehouse {warehouse} is {status}; only"
            " delivered goods are returned",
            status=status,
        )
    return live[-1]


def price_lines(
    config: ReturnsConfig,
    order: Order,
    place: Place,
    units: Mapping[int, int],
    *,
    categories: Mapping[int, str],
    delivered_ms: int,
    at_ms: int,
) -> list[ReturnLine]:
    """The lines of one parcel's return, priced as bought. Refuses an excluded category and a
    window closed at ``at_ms`` (it opens at ``delivered_ms``, the parcel's delivery)."""
    out: list[ReturnLine] = []
    for sku, quantity in units.items():
        category = categories.get(sku, "")
        if not config.returnable(category):
            raise CategoryNotReturnable(
                f"SKU {sku} is of category {category!r}, which cannot be returned",
                sku=sku,
                category=category,
            )
        window = config.window_ms(category)
        if at_ms > delivered_ms + window:
            raise ReturnWindowClosed(
                f"the return window of SKU {sku} closed at {iso_ms(delivered_ms + window)}"
                f" ({window / DAY_MS:g} days after delivery)",
                sku=sku,
                delivered_at=iso_ms(delivered_ms),
                window_days=window / DAY_MS,
            )
        price = next(
            li.unit_price for li in order.lines if li.sku == sku and li.warehouse == place[0]
        )
        out.append(ReturnLine(sku, quantity, price, category))
    return out
