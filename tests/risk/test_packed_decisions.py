"""An allowed order's decision packed in its row (``orders.risk_packed``, schema version 21:
MessagePack, ``core_rs/src/risk/packed.rs``) reads back as the same decision the core writes as
JSON for a ``risk_decisions`` row, and the feature indexes it stores keep their meaning."""

import msgspec
import orjson
import pytest

from pyorder._core import Inventory, OrderBook, OrderIdGenerator, OrderRows, RiskEngine
from pyorder.auth import buyer_number
from pyorder.risk.decisions import unpack_order_risk
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import RiskSettings, load_engine

T0 = 1_800_000_000_000

CATALOGUE_AT_SCHEMA_21 = (
    "buyer_orders_1m", "buyer_orders_1h", "buyer_orders_24h", "device_orders_1m",
    "device_orders_1h", "device_orders_24h", "ip_orders_1m", "ip_orders_1h", "ip_orders_24h",
    "address_orders_1m", "address_orders_1h", "address_orders_24h", "instrument_attempts_1m",
    "instrument_attempts_1h", "instrument_attempts_24h", "buyer_amount_1h", "buyer_amount_24h",
    "device_buyers_24h", "ip_buyers_24h", "address_buyers_24h", "email_buyers_24h",
    "phone_buyers_24h", "buyer_devices_24h", "buyer_addresses_24h", "buyer_instruments_24h",
    "instrument_buyers_24h", "account_age_s", "buyer_orders_total", "amount",
    "amount_vs_buyer_mean", "quantity", "ip_region_mismatch", "instrument_declines_1h",
    "device_declines_1h", "ip_declines_1h", "buyer_declines_24h", "seconds_since_release",
    "device_sku_orders_1h", "ip_sku_orders_1h", "agent_class",
)  # fmt: skip
"""The catalogue when packed decisions began to name a feature by its index."""


def test_the_catalogue_is_only_appended_to() -> None:
    """A stored decision names its reasons' features by index: a feature renamed, removed or
    moved would change what every stored decision says. New features go at the end."""
    assert FEATURE_NAMES[: len(CATALOGUE_AT_SCHEMA_21)] == CATALOGUE_AT_SCHEMA_21


def _book(engine: RiskEngine) -> tuple[OrderBook, OrderRows]:
    inventory = Inventory()
    inventory.add_warehouse()
    inventory.set_region(0, [0])
    book = OrderBook(inventory, OrderIdGenerator(1), 900_000)
    book.set_region("north", 0)
    for price in (1_000, 250_000, 99):
        sku = inventory.add_sku({0: 10_000})
        book.set_sku(sku, price, "CNY", "merchant:m")
    book.set_risk(engine)
    return book, OrderRows()


def _decisions(sample_allowed: float) -> tuple[OrderRows, RiskEngine]:
    """The same 300 orders of 20 buyers, on 30 devices and 7 IPs, through a fresh engine."""
    engine = load_engine(RiskSettings(enabled=True, sample_allowed=sample_allowed))
    book, rows = _book(engine)
    for i in range(300):
        buyer = f"b{i % 20}"
        body = {
            "lines": [{"sku": i % 3, "quantity": 1 + i % 4}],
            "address": {"name": "A", "line1": f"{i % 11} Road", "city": "X", "region": "north"},
            "context": {"device_id": f"d-{i % 30}"},
        }
        client = (f"10.0.0.{i % 7}", "north", 1 + i % 3, None)
        status, _, _, _ = book.place_one(
            orjson.dumps(body), buyer, buyer_number(buyer), rows, T0 + i * 1_000, client
        )
        assert status in (201, 422)
    return rows, engine


def test_a_packed_decision_reads_as_the_json_the_core_writes_for_a_sampled_one() -> None:
    """Two engines see the same orders: one keeps every allowed decision in the order's row
    (packed), the other samples them all into ``risk_decisions`` rows (JSON columns, written by
    other code). Read back, each allowed order's decision is the same."""
    packed_rows, engine = _decisions(0.0)
    json_rows, _ = _decisions(1.0)
    packed = [unpack_order_risk(r) for _, r in packed_rows.order_risks() if r is not None]
    sampled = [d for d in json_rows.decision_tuples() if d[4] == "allow"]
    assert len(packed) == len(sampled) > 200
    reasons_seen = 0
    for risk, row in zip(packed, sampled, strict=True):
        score, model, decided_by, three_ds, fired, reasons = risk
        assert (score, model, decided_by, three_ds) == (row[6], row[7], row[8], bool(row[5]))
        assert model == engine.model_version
        assert fired == orjson.loads(row[9])
        want = [[r["feature"], r["value"], r["contribution"]] for r in orjson.loads(row[10])]
        assert reasons == want
        reasons_seen += len(reasons)
    assert reasons_seen > 2 * len(packed)


def test_fractions_missing_values_and_rules_unpack() -> None:
    """What the orders above do not reach: a fractional value (a float), a missing one (nil),
    an unscored decision by an allow rule (its text), the model as text."""
    packed = msgspec.msgpack.encode(
        [None, "v1", "vip", False, ["vip"], [[29, 2.5, 1], [31, None, 1_500_000]]]
    )
    assert unpack_order_risk(packed) == [
        None,
        "v1",
        "vip",
        False,
        ["vip"],
        [["amount_vs_buyer_mean", 2.5, 1e-06], ["ip_region_mismatch", None, 1.5]],
    ]
    # Written by a newer build (a feature appended, a code added): named, not a failure.
    newer = msgspec.msgpack.encode([1, None, 7, False, [], [[len(FEATURE_NAMES), 3, 2]]])
    assert unpack_order_risk(newer)[2:] == [
        "code_7",
        False,
        [],
        [[f"feature_{len(FEATURE_NAMES)}", 3, 2e-06]],
    ]
    for bad in (b"\x90", msgspec.msgpack.encode({"score": 1})):
        with pytest.raises(ValueError, match="not a packed decision"):
            unpack_order_risk(bad)
    with pytest.raises(ValueError, match="truncated"):  # msgspec.DecodeError, a ValueError
        unpack_order_risk(packed[:-1])
