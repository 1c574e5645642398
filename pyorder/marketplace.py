"""The marketplace model: what each party sees of an order (``docs/marketplace.md``).

One checkout is one order, whoever sells its lines: one charge pays it, its parcels (one per
warehouse) and refunds hang off it. Its buyer sees all of it and admins see everything; a
merchant sees **its part**, cut here and nowhere else, for the API's answers and for the
webhook events sent to it alike:

- the order: its own lines only; ``total`` is the sum of those lines (the order's total
  would tell what the other merchants sold); the buyer as a pseudonym of its own (stable for
  this merchant, different for every other: ``Pseudonyms``); the address as name masked,
  city, region and country (the platform books the carrier with the full address, so a
  merchant never needs the street or the phone);
- the payment: the order's status, and its share of the amounts (allocated by line value,
  ``allocate``), without the attempts (the buyer's card, 3-D Secure links and the provider's
  ids are the platform's business);
- refunds: those touching its lines, each at its share and with its own lines only;
- parcels: those holding its lines, each showing only those lines; returns are already one
  per merchant (only the buyer is pseudonymised).

Money is integer minor units; a share is never rounded away: ``allocate`` hands out exactly the
amount it splits.
"""

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pyorder.auth import Principal, Role, load_or_create_secret
from pyorder.logistics.model import Shipment
from pyorder.orders.model import Order
from pyorder.payments.model import Attempt, Payment, PaymentStatus, Refund, RefundStatus
from pyorder.returns.model import Return

MERCHANT_PREFIX = f"{Role.MERCHANT.value}:"
"""Principal keys of merchants start with it (``merchant:<subject>``)."""
ADDRESS_FIELDS = ("city", "region", "country")
"""What a merchant sees of the delivery address, besides the masked name."""
PSEUDONYM_KEY_FILE = "buyer-pseudonym-key"
PSEUDONYM_PREFIX = "buyer_"


def merchant_of(who: Principal) -> str | None:
    """The merchant key whose part ``who`` sees, or None for a buyer or an admin (whole)."""
    return who.key if who.role is Role.MERCHANT else None


# --- money: shares ------------------------------------------------------------------------------


def allocate(amount: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``amount`` (minor units) over the keys in proportion to their ``weights``, by
    largest remainder (ties to the smaller key): the shares always add up to ``amount``.
    Keys of weight 0 get 0; with no positive weight, nobody gets anything."""
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0 or amount == 0:
        return {k: 0 for k in weights}
    shares = {k: amount * w // total if w > 0 else 0 for k, w in weights.items()}
    left = amount - sum(shares.values())
    by_remainder = sorted(
        (k for k, w in weights.items() if w > 0),
        key=lambda k: (-(amount * weights[k] % total), k),
    )
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares


def subtotals(order: Order) -> dict[str, int]:
    """Merchant key -> the value of its lines in the order (minor units)."""
    out: dict[str, int] = {}
    for li in order.lines:
        out[li.merchant] = out.get(li.merchant, 0) + li.quantity * li.unit_price
    return out


def refund_shares(
    order: Order, amount: int, lines: Iterable[tuple[int, int]], requested_by: str
) -> dict[str, int]:
    """Merchant key -> its part of a refund of ``amount`` of ``order``. A merchant's own refund
    is all its own (it may refund only its lines); one by lines is split by the value of the
    lines refunded; one by amount alone (a cancellation, an admin's) by the merchants'
    subtotals."""
    if requested_by.startswith(MERCHANT_PREFIX):
        return {requested_by: amount}
    lines = tuple(lines)
    if not lines:
        return allocate(amount, subtotals(order))
    price = {li.sku: (li.merchant, li.unit_price) for li in order.lines}
    weights: dict[str, int] = {}
    for sku, quantity in lines:
        if sku in price:
            merchant, unit = price[sku]
            weights[merchant] = weights.get(merchant, 0) + quantity * unit
    return allocate(amount, weights)


def refund_part(
    order: Order,
    merchant: str,
    amount: int,
    lines: Iterable[tuple[int, int]],
    requested_by: str,
) -> tuple[int, tuple[tuple[int, int], ...]] | None:
    """``merchant``'s part of a refund of ``order``: (its share, its own lines refunded), or
    None when the refund does not touch its lines."""
    lines = tuple(lines)
    share = refund_shares(order, amount, lines, requested_by).get(merchant, 0)
    if share <= 0:
        return None
    own = {li.sku for li in order.lines if li.merchant == merchant}
    return share, tuple((sku, q) for sku, q in lines if sku in own)


def warehouses_of(order: Order, merchant: str) -> frozenset[int]:
    """The warehouses ``merchant``'s lines of ``order`` ship from: its parcels."""
    return frozenset(li.warehouse for li in order.lines if li.merchant == merchant)


def refund_recipients(refund: Refund, owner: Callable[[int], str | None]) -> frozenset[str] | None:
    """The merchants a refund concerns, from what is known without the order (``owner``: a
    SKU's merchant); None when it concerns every merchant of the order (one by amount alone)."""
    if refund.requested_by.startswith(MERCHANT_PREFIX):
        return frozenset({refund.requested_by})
    if not refund.lines:
        return None
    return frozenset(m for m in (owner(sku) for sku, _ in refund.lines) if m is not None)


# --- the buyer: pseudonym, masked name, coarse address -----------------------------------------


class Pseudonyms:
    """The buyer as one merchant sees it: ``buyer_<20 hex>``, a keyed BLAKE2b of (merchant,
    buyer). Stable, so a merchant can tell its returning buyers apart and serve them; keyed
    and per merchant, so it names nobody outside the platform and two merchants cannot join
    their buyers (Taobao's per-application ``open_uid`` works the same way). The key is a file
    of the data directory, made on first use (like the token secret: nodes of one deployment
    share it)."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._key: bytes | None = None
        self._cache: dict[tuple[str, str], str] = {}

    def _secret(self) -> bytes:
        if self._key is None:
            text = load_or_create_secret(self._data_dir, PSEUDONYM_KEY_FILE)
            self._key = hashlib.blake2b(text.encode(), digest_size=32).digest()
        return self._key

    def of(self, merchant: str, buyer: str) -> str:
        """The pseudonym of ``buyer`` (a subject) for ``merchant`` (a principal key)."""
        found = self._cache.get((merchant, buyer))
        if found is None:
            data = merchant.encode() + b"\x00" + buyer.encode()
            digest = hashlib.blake2b(data, key=self._secret(), digest_size=10).hexdigest()
            found = PSEUDONYM_PREFIX + digest
            if len(self._cache) >= 65536:
                self._cache.clear()
            self._cache[(merchant, buyer)] = found
        return found


def mask_name(name: object) -> str:
    """A name as a merchant sees it: its first character and ``**`` (``张**``; Taobao and JD
    show a buyer's name so); empty stays empty."""
    text = str(name or "").strip()
    return f"{text[0]}**" if text else ""


def coarse_address(address: Mapping[str, Any]) -> dict[str, Any]:
    """What a merchant sees of a delivery address: the masked name, city, region, country."""
    out: dict[str, Any] = {"name": mask_name(address.get("name"))}
    for key in ADDRESS_FIELDS:
        if key in address:
            out[key] = address[key]
    return out


# --- the cut ------------------------------------------------------------------------------------


class Views:
    """Cuts orders, payments, refunds, parcels and returns to what the caller may see."""

    def __init__(self, data_dir: Path) -> None:
        self.pseudonyms = Pseudonyms(data_dir)

    # by caller: the API's answers

    def order(self, who: Principal, order: Order) -> Order:
        merchant = merchant_of(who)
        return order if merchant is None else self.order_for(merchant, order)

    def orders(self, who: Principal, orders: list[Order]) -> list[Order]:
        merchant = merchant_of(who)
        return orders if merchant is None else [self.order_for(merchant, o) for o in orders]

    def payment(
        self,
        who: Principal,
        order: Order | None,
        pay: Payment | None,
        attempts: list[Attempt],
        refunds: list[Refund],
    ) -> tuple[Payment | None, list[Attempt]]:
        """The payment and its attempts as ``who`` sees them (``order`` and ``refunds`` are
        needed for a merchant only)."""
        merchant = merchant_of(who)
        if merchant is None or pay is None:
            return pay, attempts
        assert order is not None, "a merchant's view of a payment needs its order"
        return self.payment_for(merchant, order, pay, refunds), []

    def refunds(self, who: Principal, order: Order | None, refunds: list[Refund]) -> list[Refund]:
        merchant = merchant_of(who)
        if merchant is None:
            return refunds
        assert order is not None, "a merchant's view of refunds needs their order"
        cut = (self.refund_for(merchant, order, r) for r in refunds)
        return [r for r in cut if r is not None]

    def shipments(
        self, who: Principal, order: Order, shipments: list[Shipment]
    ) -> tuple[Order, list[Shipment]]:
        """The order (cut) and its parcels holding the caller's lines (a merchant's)."""
        merchant = merchant_of(who)
        if merchant is None:
            return order, shipments
        mine = warehouses_of(order, merchant)
        return self.order_for(merchant, order), [s for s in shipments if s.warehouse in mine]

    def ret(self, who: Principal, ret: Return) -> Return:
        merchant = merchant_of(who)
        if merchant is None:
            return ret
        return replace(ret, buyer=self.pseudonyms.of(merchant, ret.buyer))

    # by merchant: also for the webhook events of its endpoints

    def order_for(self, merchant: str, order: Order) -> Order:
        """``merchant``'s part of ``order``: its lines, their total, the buyer pseudonymised
        and the address coarse."""
        lines = tuple(li for li in order.lines if li.merchant == merchant)
        return replace(
            order,
            buyer=self.pseudonyms.of(merchant, order.buyer),
            total=sum(li.quantity * li.unit_price for li in lines),
            address=coarse_address(order.address),
            lines=lines,
        )

    def refund_for(self, merchant: str, order: Order, refund: Refund) -> Refund | None:
        """``merchant``'s part of a refund of ``order``: its share and its own lines, or None
        when the refund does not touch its lines."""
        part = refund_part(order, merchant, refund.amount, refund.lines, refund.requested_by)
        if part is None:
            return None
        return replace(refund, amount=part[0], lines=part[1])

    def payment_for(
        self, merchant: str, order: Order, pay: Payment, refunds: list[Refund]
    ) -> Payment:
        """``merchant``'s share of the payment's amounts, and a status derived from them: a
        refund of another merchant's lines does not make its part ``partially_refunded``."""
        weights = subtotals(order)

        def share(amount: int) -> int:
            return allocate(amount, weights).get(merchant, 0)

        mine = [c for c in (self.refund_for(merchant, order, r) for r in refunds) if c]
        refunded = sum(r.amount for r in mine if r.status is RefundStatus.SUCCEEDED)
        charged = share(pay.charged)
        status = pay.status
        if status in _MONEY_TAKEN:
            if any(r.status is RefundStatus.PENDING for r in mine):
                status = PaymentStatus.REFUND_PENDING
            elif charged > 0 and refunded >= charged:
                status = PaymentStatus.REFUNDED
            else:
                status = PaymentStatus.PARTIALLY_REFUNDED if refunded else PaymentStatus.CHARGED
        return replace(
            pay,
            buyer=self.pseudonyms.of(merchant, pay.buyer),
            amount=share(pay.amount),
            authorized=share(pay.authorized),
            charged=charged,
            refunded=refunded,
            status=status,
        )


_MONEY_TAKEN = frozenset(
    {
        PaymentStatus.CHARGED,
        PaymentStatus.REFUND_PENDING,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
    }
)
"""Payment statuses a merchant's own refunds decide for its part."""
