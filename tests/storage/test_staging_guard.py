"""The staging guard (``pyorder.storage.limits``): a row whose values no store could hold is
refused when it is staged, as that one request's error, and the commit of everything else
staged in the same window succeeds, on both stores."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyorder.auth import Principal, Role
from pyorder.catalog.model import Warehouse
from pyorder.orders.input import OrderInput
from pyorder.payments.model import AttemptStatus
from pyorder.payments.providers import PaymentsConfig, ProviderConfig
from pyorder.payments.schemas import IntentStatus, PaymentIntent
from pyorder.platform import Config, Platform
from pyorder.server.statuses import status_of
from pyorder.storage.limits import I64_MAX, I64_MIN, MAX_DEPTH, MAX_TEXT, Unstorable, check_row
from tests.support.postgres import fresh_postgres_database

MERCHANT = Principal(Role.MERCHANT, "acme")
BUYER = Principal(Role.BUYER, "alice")
ADDRESS = {"name": "Alice", "line1": "1 Road", "city": "X", "region": "north"}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (Warehouse(2**63, "w", "m"), "Warehouse.id"),
        (Warehouse(-(2**63) - 1, "w", "m"), "Warehouse.id"),
        (Warehouse(1, "a\x00b", "m"), "Warehouse.name"),
        (Warehouse(1, "a\ud800b", "m"), "Warehouse.name"),
        (Warehouse(1, "x" * (MAX_TEXT + 1), "m"), "Warehouse.name"),
    ],
)
def test_values_no_store_holds_are_refused_naming_the_field(row: object, field: str) -> None:
    with pytest.raises(Unstorable) as refused:
        check_row(row)
    assert refused.value.details == {"field": field}
    assert status_of(refused.value) == 422  # the server's table (pyorder/server/statuses.py)


@dataclass(frozen=True)
class Nested:
    lines: tuple[tuple[int, int], ...]
    meta: dict[str, object]
    ratio: float = 0.5


def test_nested_values_are_checked_and_good_ones_pass() -> None:
    check_row(Warehouse(I64_MAX, "仓库 ✓", "m"))
    check_row(Warehouse(I64_MIN, "", "m"))
    check_row(Nested(((1, 2),), {"a": [1, "b", None, True]}))
    with pytest.raises(Unstorable, match=r"Nested\.lines"):
        check_row(Nested(((1, 2**64),), {}))
    with pytest.raises(Unstorable, match=r"Nested\.meta\.a"):
        check_row(Nested((), {"a": ["\x00"]}))
    with pytest.raises(Unstorable, match="not a finite number"):
        check_row(Nested((), {}, float("inf")))
    deep: object = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(Unstorable, match="nested"):
        check_row(Nested((), {"a": deep}))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with fresh_postgres_database("pyorder_guard") as dsn:
        yield dsn


def test_a_bad_row_is_refused_at_staging_and_the_others_commit(
    database: str | None, tmp_path: Path
) -> None:
    """An embedding caller (no API schema in front) names a warehouse with U+0000 and a SKU
    with a lone surrogate, and a provider's PaymentIntent built without decoding carries an
    amount of 2**63: each is refused when staged, nothing of it is kept in memory, and the
    orders staged in the same window commit."""

    # Nothing listens there: the attempt is abandoned at once (its creation is refused).
    nowhere = ProviderConfig("nowhere", "http://127.0.0.1:9", "whsec_x", ("card",))
    config = Config(
        data_dir=tmp_path,
        database=database,
        payments=PaymentsConfig(providers=(nowhere,), retry_max_s=0.05),
    )

    async def body() -> None:
        platform = Platform(config)
        await platform.start()
        wh = platform.catalog.create_warehouse(MERCHANT, "west", ["north"])
        sku = platform.catalog.create_sku(
            MERCHANT, title="phone", price=999, currency="CNY", stock={wh.id: 10}
        ).sku
        first = platform.orders.place(BUYER, OrderInput([(sku.id, 1)], ADDRESS))
        await platform.intake.durable()
        await platform.payments.start(BUYER, first.id, "card", None)
        for _ in range(200):
            [att] = platform.payments.attempts_of(first.id)
            if att.status is AttemptStatus.ABANDONED:
                break
            await asyncio.sleep(0.02)
        assert att.status is AttemptStatus.ABANDONED
        failures = platform.intake.stats.failures

        # One step of the event loop: good orders and bad rows, staged together.
        placed = [platform.orders.place(BUYER, OrderInput([(sku.id, 1)], ADDRESS))]
        with pytest.raises(Unstorable, match=r"Warehouse\.name"):
            platform.catalog.create_warehouse(MERCHANT, "east\x00", ["north"])
        with pytest.raises(Unstorable, match=r"Sku\.title"):
            platform.catalog.create_sku(
                MERCHANT, title="lamp\ud800", price=1, currency="CNY", stock={wh.id: 1}
            )
        charged = PaymentIntent(
            id="pi_x",
            status=IntentStatus.SUCCEEDED,
            amount=999,
            amount_received=2**63,
            currency="CNY",
            metadata={"order_id": str(first.id), "attempt": "1"},
        )
        with pytest.raises(Unstorable, match="amount_received"):
            platform.payments.observe_intent("nowhere", charged)
        placed.append(platform.orders.place(BUYER, OrderInput([(sku.id, 2)], ADDRESS)))
        await platform.intake.durable()

        assert platform.intake.stats.failures == failures
        for order in placed:
            assert await platform.orders.get(BUYER, order.id) == order
        assert [w.name for w in platform.catalog.list_warehouses(MERCHANT)] == ["west"]
        [att] = platform.payments.attempts_of(first.id)
        assert (att.status, att.amount_received) == (AttemptStatus.ABANDONED, 0)
        assert platform.payments.payments[first.id].charged == 0
        await platform.stop()

        # What the store holds is what memory held.
        again = Platform(config)
        await again.start()
        assert [w.name for w in again.catalog.list_warehouses(MERCHANT)] == ["west"]
        assert again.engine.inventory.stock(sku.id).reserved == 4
        [att] = again.payments.attempts_of(first.id)
        assert (att.status, att.amount_received) == (AttemptStatus.ABANDONED, 0)
        await again.stop()

    asyncio.run(body())
