"""The marketplace model's cut (``pyorder.marketplace``): what a merchant sees of an order, its
payment, refunds, parcels and events, on plain records. The API and the webhooks are checked
end to end in ``tests/server/test_authorization.py`` and ``tests/marketplace/``."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyorder.auth import Principal, Role, load_or_create_secret
from pyorder.events import payloads
from pyorder.events.model import EventType
from pyorder.logistics.model import Fulfilment, FulfilmentStatus, Shipment, ShipmentStatus
from pyorder.marketplace import (
    PSEUDONYM_KEY_FILE,
    Views,
    allocate,
    coarse_address,
    mask_name,
    refund_recipients,
    refund_shares,
)
from pyorder.orders.model import Order, OrderLine, OrderStatus
from pyorder.payments.model import Payment, PaymentStatus, Refund, RefundStatus

X, Y, Z = "merchant:x", "merchant:y", "merchant:z"
ADDRESS = {
    "name": "张三丰",
    "line1": "1 Secret Road",
    "line2": "Flat 9",
    "city": "Hangzhou",
    "region": "zj",
    "postal_code": "310000",
    "country": "CN",
    "phone": "+86 138 0000 0000",
}
ORDER = Order(
    id=7,
    buyer="alice",
    status=OrderStatus.PAID,
    currency="CNY",
    total=2 * 500 + 300 + 1200,
    region="zj",
    address=ADDRESS,
    reservation=1,
    created_ms=1_000,
    deadline_ms=2_000,
    updated_ms=1_500,
    lines=(
        OrderLine(sku=1, warehouse=0, quantity=2, unit_price=500, merchant=X),
        OrderLine(sku=2, warehouse=0, quantity=1, unit_price=300, merchant=Y),
        OrderLine(sku=3, warehouse=1, quantity=1, unit_price=1200, merchant=Y),
    ),
)
"""X sells 1,000 of it from warehouse 0; Y 1,500, from warehouses 0 and 1."""


def refund(amount: int, lines: tuple[tuple[int, int], ...], by: str, n: int = 1) -> Refund:
    return Refund(
        order_id=7,
        number=n,
        attempt=1,
        provider="card1",
        amount=amount,
        currency="CNY",
        status=RefundStatus.SUCCEEDED,
        reason="r",
        lines=lines,
        idempotency_key=f"k{n}",
        provider_refund_id=f"re_{n}",
        requested_by=by,
        error="",
        created_ms=1,
        updated_ms=1,
        settled_ms=1,
    )


@pytest.fixture
def views(tmp_path: Path) -> Views:
    return Views(tmp_path)


# --- shares ------------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=10**12),
    st.dictionaries(st.text(max_size=3), st.integers(min_value=0, max_value=10**9), max_size=6),
)
def test_allocate_hands_out_exactly_the_amount_in_proportion(
    amount: int, weights: dict[str, int]
) -> None:
    shares = allocate(amount, weights)
    assert set(shares) == set(weights)
    total = sum(weights.values())
    if total == 0:
        assert set(shares.values()) <= {0}
        return
    assert sum(shares.values()) == amount
    for k, w in weights.items():
        exact = amount * w / total
        assert abs(shares[k] - exact) < 1, (k, shares, weights)
        assert w > 0 or shares[k] == 0


def test_allocate_is_deterministic_with_ties_to_the_smaller_key() -> None:
    assert allocate(1, {"b": 1, "a": 1}) == {"a": 1, "b": 0}
    assert allocate(100, {"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}


def test_refund_shares_follow_who_asked_and_which_lines() -> None:
    # A merchant's own refund (by amount) is all its own: it may refund only its lines.
    assert refund_shares(ORDER, 400, (), Y) == {Y: 400}
    # By lines: split by the value of the lines refunded.
    assert refund_shares(ORDER, 800, ((1, 1), (2, 1)), "admin:root") == {X: 500, Y: 300}
    # By amount alone (a cancellation, an admin's goodwill): by the merchants' subtotals.
    assert refund_shares(ORDER, 2500, (), "system") == {X: 1000, Y: 1500}
    assert refund_shares(ORDER, 100, (), "admin:root") == {X: 40, Y: 60}


def test_refund_recipients_are_the_merchants_it_touches() -> None:
    owner = {1: X, 2: Y, 3: Y}.get
    assert refund_recipients(refund(300, ((2, 1),), "admin:root"), owner) == frozenset({Y})
    assert refund_recipients(refund(50, (), Y), owner) == frozenset({Y})
    assert refund_recipients(refund(50, (), "system"), owner) is None  # every merchant


# --- the order --------------------------------------------------------------------------------


def test_a_merchant_sees_its_lines_their_total_a_pseudonym_and_a_coarse_address(
    views: Views,
) -> None:
    x = views.order(Principal(Role.MERCHANT, "x"), ORDER)
    assert [li.sku for li in x.lines] == [1]
    assert x.total == 1000
    assert x.address == {"name": "张**", "city": "Hangzhou", "region": "zj", "country": "CN"}
    assert x.buyer.startswith("buyer_")
    assert "alice" not in x.buyer
    assert (x.id, x.status, x.currency, x.created_ms) == (7, OrderStatus.PAID, "CNY", 1_000)
    y = views.order(Principal(Role.MERCHANT, "y"), ORDER)
    assert [li.sku for li in y.lines] == [2, 3]
    assert y.total == 1500
    assert y.buyer != x.buyer, "two merchants cannot join their buyers"
    assert views.order(Principal(Role.MERCHANT, "x"), ORDER).buyer == x.buyer, "stable"
    for whole in (Principal(Role.BUYER, "alice"), Principal(Role.ADMIN, "root")):
        assert views.order(whole, ORDER) == ORDER


def test_pseudonyms_are_keyed_by_a_secret_of_the_data_directory(tmp_path: Path) -> None:
    one, two = Views(tmp_path / "a"), Views(tmp_path / "b")
    assert one.pseudonyms.of(X, "alice") != two.pseudonyms.of(X, "alice")
    assert Views(tmp_path / "a").pseudonyms.of(X, "alice") == one.pseudonyms.of(X, "alice")
    key = tmp_path / "a" / PSEUDONYM_KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600


def test_the_key_is_created_once_when_many_start_together(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_or_create_secret(tmp_path, "k"), range(64)))
    assert len(keys) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["k"], "nothing left aside"


@pytest.mark.parametrize(
    ("name", "masked"), [("张三丰", "张**"), ("Ann Lee", "A**"), ("", ""), (None, ""), ("Q", "Q**")]
)
def test_names_are_masked(name: object, masked: str) -> None:
    assert mask_name(name) == masked


def test_a_coarse_address_keeps_no_street_postcode_or_phone() -> None:
    assert coarse_address({"name": "Bo", "line1": "x", "region": "r"}) == {
        "name": "B**",
        "region": "r",
    }


# --- payment, refunds, parcels -----------------------------------------------------------------


def test_a_merchant_sees_its_share_of_the_payment_and_its_refunds(views: Views) -> None:
    pay = Payment(
        order_id=7,
        buyer="alice",
        currency="CNY",
        amount=2500,
        method="card",
        status=PaymentStatus.PARTIALLY_REFUNDED,
        authorized=2500,
        charged=2500,
        refunded=1200 + 100,
        attempts=1,
        paid_attempt=1,
        flag="",
        created_ms=1,
        updated_ms=1,
    )
    refunds = [refund(1200, ((3, 1),), Y, 1), refund(100, (), "admin:root", 2)]
    x_who = Principal(Role.MERCHANT, "x")
    x, attempts = views.payment(x_who, ORDER, pay, [], refunds)
    assert x is not None
    assert (x.amount, x.authorized, x.charged, x.refunded) == (1000, 1000, 1000, 40)
    assert x.status is PaymentStatus.PARTIALLY_REFUNDED
    assert attempts == []
    assert [(r.number, r.amount, r.lines) for r in views.refunds(x_who, ORDER, refunds)] == [
        (2, 40, ())
    ]
    y_who = Principal(Role.MERCHANT, "y")
    y, _ = views.payment(y_who, ORDER, pay, [], refunds)
    assert y is not None
    assert (y.amount, y.charged, y.refunded) == (1500, 1500, 1260)
    assert [(r.number, r.amount, r.lines) for r in views.refunds(y_who, ORDER, refunds)] == [
        (1, 1200, ((3, 1),)),
        (2, 60, ()),
    ]
    # Only Y's lines refunded: X's part is still just charged.
    x_only, _ = views.payment(x_who, ORDER, pay, [], refunds[:1])
    assert x_only is not None
    assert (x_only.refunded, x_only.status) == (0, PaymentStatus.CHARGED)
    admin = Principal(Role.ADMIN, "root")
    assert views.payment(admin, ORDER, pay, [], refunds) == (pay, [])
    assert views.refunds(admin, ORDER, refunds) == refunds


def _parcel(n: int, warehouse: int) -> Shipment:
    return Shipment(
        order_id=7,
        parcel=n,
        warehouse=warehouse,
        carrier="swift",
        status=ShipmentStatus.DELIVERED,
        idempotency_key=f"k{n}",
        carrier_shipment_id=f"s{n}",
        tracking_number=f"T{n}",
        window_id=-1,
        last_sequence=0,
        last_event_ms=0,
        error="",
        created_ms=1,
        updated_ms=1,
        delivered_ms=1,
    )


def test_a_merchant_sees_the_parcels_holding_its_lines(views: Views) -> None:
    parcels = [_parcel(1, 0), _parcel(2, 1)]
    order, seen = views.shipments(Principal(Role.MERCHANT, "x"), ORDER, parcels)
    assert [s.parcel for s in seen] == [1]
    assert [li.sku for li in order.lines] == [1]
    _, seen = views.shipments(Principal(Role.MERCHANT, "y"), ORDER, parcels)
    assert [s.parcel for s in seen] == [1, 2]


# --- events ------------------------------------------------------------------------------------


def test_every_event_type_has_a_cut() -> None:
    assert set(payloads.CUTS) == set(EventType)


def test_events_are_cut_for_the_merchant_they_are_sent_to(views: Views) -> None:
    def cut(merchant: str, kind: EventType, data: bytes | None) -> object:
        out = payloads.for_merchant(views, merchant, kind.value, data, ORDER)
        return None if out is None else orjson.loads(out)

    created: dict[str, object] = cut(X, EventType.ORDER_CREATED, None)  # type: ignore[assignment]
    obj = created["object"]
    assert isinstance(obj, dict)
    assert [li["sku"] for li in obj["lines"]] == [1]
    assert (obj["total"], obj["status"], obj["address"]["city"]) == (
        1000,
        "pending_payment",
        "Hangzhou",
    )
    assert "line1" not in obj["address"]
    assert obj["buyer"] != "alice"

    paid = payloads.status_data(ORDER, OrderStatus.PENDING_PAYMENT)
    assert cut(Y, EventType.ORDER_PAID, paid) == {
        "object": payloads.order_object(views.order_for(Y, ORDER)),
        "previous_status": "pending_payment",
    }

    fulfilment = Fulfilment(
        order_id=7,
        parcels=2,
        status=FulfilmentStatus.DELIVERED,
        window_id=-1,
        paid_ms=1,
        delivered_ms=2,
        fulfilment_ms=1,
        updated_ms=2,
    )
    shipped = payloads.object_data(
        payloads.fulfilment_object(fulfilment, [_parcel(1, 0), _parcel(2, 1)])
    )
    x_parcels = cut(X, EventType.ORDER_DELIVERED, shipped)
    assert [p["parcel"] for p in x_parcels["object"]["parcels"]] == [1]  # type: ignore[index]

    by_y = payloads.object_data(payloads.refund_object(refund(1200, ((3, 1),), Y)))
    assert cut(X, EventType.ORDER_REFUNDED, by_y) is None
    goodwill = payloads.object_data(
        payloads.refund_object(refund(100, ((1, 1), (2, 1)), "admin:root"))
    )
    x_refund = cut(X, EventType.ORDER_REFUNDED, goodwill)
    assert x_refund["object"]["amount"] == 63  # type: ignore[index]
    assert x_refund["object"]["lines"] == [{"sku": 1, "quantity": 1}]  # type: ignore[index]

    assert cut(X, EventType.ORDER_PAID, b'{"unexpected": 1}') is None, "never sent uncut"
