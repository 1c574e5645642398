"""Orders: place (one or many), read, list, cancel, and expire unpaid ones.

Placing an order reserves its lines in the inventory core (matched to warehouses by the
delivery region), assigns a Snowflake ID, and stages the order for the group commit; the caller
acknowledges only after ``await platform.intake.durable()``. Prices and totals come from the
catalogue, never from the client. An order awaiting payment holds its units until the payment
deadline, then expires and the units return.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pyorder import inventory as inv
from pyorder.auth import Principal, Role, buyer_number
from pyorder.engine import now_ms
from pyorder.errors import (
    DomainError,
    InvalidInput,
    InvalidState,
    NotFound,
    OutOfStock,
    PurchaseLimitExceeded,
)
from pyorder.model import Order, OrderLine, OrderStatus, StatusChange

if TYPE_CHECKING:
    from pyorder.platform import Platform

MAX_LINES = 100
"""Most lines in one order."""
MAX_QUANTITY = 10_000
"""Most units of one line."""


class UnknownRegion(InvalidInput):
    code = "unknown_region"


@dataclass(frozen=True, slots=True)
class OrderInput:
    """One order as a buyer asks for it: (sku, quantity) lines and a shipping address."""

    lines: Sequence[tuple[int, int]]
    address: dict[str, Any]


class Orders:
    def __init__(self, platform: "Platform") -> None:
        self._p = platform

    # --- placing ---------------------------------------------------------------------------

    def place(self, who: Principal, order: OrderInput) -> Order:
        """Reserve and stage one order; raises a DomainError and changes nothing on refusal.

        Same outcome as ``place_many`` with one order, through the core's single-call API
        (no arrays to build for one order).
        """
        who.require(Role.BUYER)
        prepared = self._prepare(order)
        if isinstance(prepared, DomainError):
            raise prepared
        engine, now = self._p.engine, now_ms()
        try:
            rid = engine.inventory.reserve_order(
                prepared.lines,
                buyer=buyer_number(who.subject),
                region=prepared.region_id,
                timeout_ms=self._p.config.payment_timeout_ms,
                now_ms=now,
            )
        except inv.OutOfStockError as exc:
            raise _refusal(inv.ReserveStatus.OUT_OF_STOCK, exc.sku) from exc
        except inv.PurchaseLimitError as exc:
            raise _refusal(inv.ReserveStatus.LIMIT_EXCEEDED, exc.sku) from exc
        warehouses = [wh for _, wh, _ in engine.inventory.reservation(rid).lines]
        return self._record(who, prepared, rid, warehouses, engine.ids.next_id(), now)

    def place_many(self, who: Principal, orders: Sequence[OrderInput]) -> list["Placed"]:
        """Place several orders at once (one core batch); one outcome per order, in order.

        The outcome is the same as placing them one by one, in order.
        """
        who.require(Role.BUYER)
        engine = self._p.engine
        prepared: list[_Prepared | DomainError] = [self._prepare(o) for o in orders]
        ok = [p for p in prepared if isinstance(p, _Prepared)]
        results: list[Placed] = []
        placed: Iterator[Order | DomainError] = iter(())
        if ok:
            skus = np.fromiter((s for p in ok for s, _ in p.lines), np.uint32)
            qtys = np.fromiter((q for p in ok for _, q in p.lines), np.uint32)
            offsets = np.cumsum([0, *(len(p.lines) for p in ok)], dtype=np.uint32)
            regions = np.fromiter((p.region_id for p in ok), np.uint32, count=len(ok))
            buyers = np.full(len(ok), buyer_number(who.subject), np.uint64)
            now = now_ms()
            out = engine.inventory.reserve_batch(
                skus,
                qtys,
                order_offsets=offsets,
                buyers=buyers,
                regions=regions,
                timeout_ms=self._p.config.payment_timeout_ms,
                now_ms=now,
            )
            placed = iter(self._stage(who, ok, out, skus, now))
        for p in prepared:
            results.append(Placed(next(placed) if isinstance(p, _Prepared) else p))
        return results

    def _prepare(self, order: OrderInput) -> "_Prepared | DomainError":
        engine = self._p.engine
        if not 1 <= len(order.lines) <= MAX_LINES:
            return InvalidInput(f"an order has 1 to {MAX_LINES} lines", field="lines")
        currency = None
        seen: set[int] = set()
        for sku_id, qty in order.lines:
            sku = engine.skus.get(sku_id)
            if sku is None:
                return InvalidInput(f"SKU {sku_id} does not exist", field="lines", sku=sku_id)
            if not 1 <= qty <= MAX_QUANTITY:
                return InvalidInput(
                    f"quantity of SKU {sku_id} must be between 1 and {MAX_QUANTITY}", field="lines"
                )
            if sku_id in seen:
                return InvalidInput(f"SKU {sku_id} appears twice; merge the lines", field="lines")
            seen.add(sku_id)
            if currency is not None and sku.currency != currency:
                return InvalidInput("all lines of an order must share one currency", field="lines")
            currency = sku.currency
        region = order.address.get("region")
        if not isinstance(region, str) or region not in engine.regions:
            return UnknownRegion(f"we do not deliver to region {region!r}", field="address.region")
        return _Prepared(order, list(order.lines), engine.region_ids[region], region)

    def _stage(
        self,
        who: Principal,
        ok: list["_Prepared"],
        out: inv.ReserveBatchResult,
        skus: np.ndarray[Any, np.dtype[np.uint32]],
        now: int,
    ) -> list["Order | DomainError"]:
        engine = self._p.engine
        status, reservation = out.status.tolist(), out.reservation.tolist()
        warehouse, failed = out.warehouse.tolist(), out.failed_item.tolist()
        won = sum(1 for s in status if s == inv.ReserveStatus.OK)
        order_ids = iter(engine.ids.next_ids(won).tolist()) if won else iter(())
        placed: list[Order | DomainError] = []
        item = 0
        for i, p in enumerate(ok):
            n = len(p.lines)
            if status[i] != inv.ReserveStatus.OK:
                placed.append(_refusal(status[i], int(skus[failed[i]])))
            else:
                wh = warehouse[item : item + n]
                placed.append(self._record(who, p, reservation[i], wh, next(order_ids), now))
            item += n
        return placed

    def _record(
        self,
        who: Principal,
        p: "_Prepared",
        reservation: int,
        warehouses: Sequence[int],
        order_id: int,
        now: int,
    ) -> Order:
        """Build and stage an order whose lines the core reserved in ``warehouses``."""
        engine, batch = self._p.engine, self._p.intake.batch
        lines = []
        for (sku_id, qty), wh in zip(p.lines, warehouses, strict=True):
            sku = engine.skus[sku_id]
            lines.append(OrderLine(sku_id, wh, qty, sku.price, sku.merchant))
            batch.add_delta(sku_id, wh, 0, qty, 0)
        order = Order(
            id=order_id,
            buyer=who.subject,
            status=OrderStatus.PENDING_PAYMENT,
            currency=engine.skus[p.lines[0][0]].currency,
            total=sum(li.quantity * li.unit_price for li in lines),
            region=p.region,
            address=dict(p.order.address),
            reservation=reservation,
            created_ms=now,
            deadline_ms=now + self._p.config.payment_timeout_ms,
            updated_ms=now,
            lines=tuple(lines),
        )
        engine.add_pending(order)
        batch.orders.append(order)
        return order

    # --- reading ---------------------------------------------------------------------------

    async def get(self, who: Principal, order_id: int) -> Order:
        """An order as committed: one still waiting for its commit is not shown yet."""
        order = await self._p.store.get_order(order_id)
        if order is None or not _visible(who, order):
            raise NotFound(f"order {order_id} does not exist")
        return order

    async def list_for(self, who: Principal, before_id: int | None, limit: int) -> list[Order]:
        """The caller's orders, newest first: a buyer's own, a merchant's (containing its SKUs),
        or all for an admin."""
        store = self._p.store
        if who.role is Role.BUYER:
            return await store.list_orders(buyer=who.subject, before_id=before_id, limit=limit)
        if who.role is Role.MERCHANT:
            return await store.list_orders(merchant=who.key, before_id=before_id, limit=limit)
        return await store.list_orders(before_id=before_id, limit=limit)

    # --- ending ----------------------------------------------------------------------------

    async def cancel(self, who: Principal, order_id: int) -> Order:
        """Cancel an unpaid order of the caller's (admins: anyone's); its units return."""
        who.require(Role.BUYER, Role.ADMIN)
        engine = self._p.engine
        order = engine.pending.get(order_id)
        if order is None or not _visible(who, order):
            stored = await self._p.store.get_order(order_id)
            if stored is not None and stored.status is OrderStatus.PENDING_PAYMENT:
                # Its end (another cancel, an expiry) is staged but not committed yet: wait for
                # it, so the answer names the state the order really ends in.
                await self._p.intake.durable()
                stored = await self._p.store.get_order(order_id)
            if stored is None or not _visible(who, stored):
                raise NotFound(f"order {order_id} does not exist")
            raise InvalidState(
                f"order {order_id} is {stored.status.value}; only unpaid orders can be cancelled",
                status=stored.status.value,
            )
        try:
            engine.inventory.release(order.reservation)
        except inv.ReservationResolvedError as exc:
            # The deadline passed: the core expired it on the spot; record that.
            self._end(order, OrderStatus.EXPIRED)
            raise InvalidState(f"order {order_id} expired before it was cancelled") from exc
        return self._end(order, OrderStatus.CANCELLED)

    def expire_due(self, limit: int = 4096) -> int:
        """Expire unpaid orders whose payment deadline passed; returns how many were staged."""
        engine = self._p.engine
        expired = engine.inventory.expire_due(now_ms(), limit)
        for rid in expired.tolist():
            oid = engine.by_reservation.get(rid)
            order = engine.pending.get(oid) if oid is not None else None
            if order is not None:
                self._end(order, OrderStatus.EXPIRED)
        return len(expired)

    def _end(self, order: Order, status: OrderStatus) -> Order:
        """Stage the end of a pending order whose reservation the core has released."""
        engine, batch = self._p.engine, self._p.intake.batch
        engine.pop_pending(order.id)
        at = now_ms()
        batch.status_changes.append(StatusChange(order.id, OrderStatus.PENDING_PAYMENT, status, at))
        for line in order.lines:
            batch.add_delta(line.sku, line.warehouse, 0, -line.quantity, 0)
        return _replace_status(order, status, at)


@dataclass(frozen=True, slots=True)
class _Prepared:
    order: OrderInput
    lines: list[tuple[int, int]]
    region_id: int
    region: str


@dataclass(frozen=True, slots=True)
class Placed:
    """The outcome of placing one order: the order, or why it was refused."""

    outcome: "Order | DomainError"

    def unwrap(self) -> Order:
        if isinstance(self.outcome, DomainError):
            raise self.outcome
        return self.outcome


def _refusal(code: int, sku: int) -> DomainError:
    if code == inv.ReserveStatus.OUT_OF_STOCK:
        return OutOfStock(f"SKU {sku} is out of stock for this order", sku=sku)
    if code == inv.ReserveStatus.LIMIT_EXCEEDED:
        return PurchaseLimitExceeded(
            f"SKU {sku} is limited per buyer and this order would exceed the limit", sku=sku
        )
    return InvalidInput(f"the order was refused ({inv.ReserveStatus(code).name.lower()})", sku=sku)


def _visible(who: Principal, order: Order) -> bool:
    if who.role is Role.ADMIN:
        return True
    if who.role is Role.BUYER:
        return order.buyer == who.subject
    return any(line.merchant == who.key for line in order.lines)


def _replace_status(order: Order, status: OrderStatus, at: int) -> Order:
    return replace(order, status=status, updated_ms=at)
