"""The order of a batch's statements inside its one transaction, on both stores: a batch
touching every capability writes its tables in the order the group commit's prefix guarantee,
the foreign keys and the events' fan-out (which reads the order lines and endpoints written
before it) were built on. Moving a capability's rows into a part (``pyorder.parts``) must keep
it: the expected list is the order the stores wrote before any part existed.

No database is needed: the SQLite writer's statement groups are read as built, and the
PostgreSQL writer runs against a connection that records what it is asked to run.
"""

import asyncio
import re
from typing import Any, cast

from pyorder.catalog.model import StockRow
from pyorder.events.model import Delivery, DeliveryState, EventType, OrderEvent
from pyorder.events.storage import EVENTS
from pyorder.kernel.inbox import WebhookEvent
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.logistics.model import TrackingEvent
from pyorder.logistics.storage import LOGISTICS
from pyorder.model import WriteBatch
from pyorder.orders.model import OrderStatus, StatusChange
from pyorder.payments.model import Refund, RefundStatus
from pyorder.payments.storage import PAYMENTS, REFUNDS
from pyorder.returns.storage import RETURNS
from pyorder.storage import parts, postgres, sqlite
from pyorder.storage.outbox import OUTBOX

from .records import catalog, idem, line, order, placed
from .test_storage_events import endpoint
from .test_storage_logistics import FULFILMENT, PARCEL, WINDOW
from .test_storage_payments import ATTEMPT, PAYMENT
from .test_storage_returns import OPENED, RETURN

WRITES = [
    ("INSERT", "warehouses"),
    ("DELETE", "regions"),
    ("INSERT", "regions"),
    ("INSERT", "skus"),
    ("INSERT", "stock"),
    ("UPDATE", "stock"),
    ("INSERT", "orders"),
    ("INSERT", "order_lines"),
    ("placed", "orders"),
    ("placed", "order_lines"),
    ("UPDATE", "orders"),
    ("INSERT", "idempotency"),
    ("INSERT", "payments"),
    ("INSERT", "payment_attempts"),
    ("INSERT", "outbox"),
    ("INSERT", "webhook_events"),
    ("INSERT", "refunds"),
    ("INSERT", "shipments"),
    ("INSERT", "fulfilments"),
    ("INSERT", "delivery_windows"),
    ("INSERT", "tracking_events"),
    ("INSERT", "returns"),
    ("INSERT", "return_decisions"),
    ("INSERT", "webhook_endpoints"),
    ("UPDATE", "order_events"),  # delivery outcomes
    ("UPDATE", "order_events"),  # a deleted endpoint's pending events cancelled
    ("INSERT", "order_events"),  # order.created of the placed orders
    ("INSERT", "order_events"),  # the staged events fanned out
    ("INSERT", "intake_commits"),
]
"""(verb, table) of every statement, in order; ``placed``: the Rust intake's rows."""

_VERB = re.compile(r"\s*(INSERT INTO|UPDATE|DELETE FROM) (\w+)")
_CTE = re.compile(r"(\w+) AS \((INSERT INTO|UPDATE|DELETE FROM) (\w+)")


def _write(sql: str) -> tuple[str, str]:
    found = _VERB.match(sql)
    assert found is not None, sql
    return found[1].split()[0], found[2]


def _writes(sql: str) -> list[tuple[str, str]]:
    """(verb, table) of each write of a statement: its data-modifying CTEs in the order they
    run (they are written in that order; each waits for the counted ones before it)."""
    if not sql.startswith("WITH "):
        return [_write(sql)]
    return [(verb.split()[0], table) for _name, verb, table in _CTE.findall(sql)]


def every_capability() -> WriteBatch:
    """A batch with rows of every kind a batch can hold."""
    batch = catalog(n_skus=1, n_warehouses=1)
    batch.stock_rows.append(StockRow(0, 1, 5, 0, 0))
    batch.add_delta(0, 0, -1, 0, 1)
    batch.orders.append(order(1, line(0)))
    batch.placed = placed(order(2, line(0)))
    pending, paid = OrderStatus.PENDING_PAYMENT, OrderStatus.PAID
    batch.status_changes.append(StatusChange(1, pending, paid, 9))
    batch.idempotency.append(idem("k"))
    batch.part(PAYMENTS).payments[7] = PAYMENT
    batch.part(PAYMENTS).attempts[(7, 1)] = ATTEMPT
    charge = OutboxItem(7, 1, OutboxKind.CHARGE, False, 1, 1)
    batch.part(OUTBOX).items[charge.key] = charge
    seen = WebhookEvent("card1", "evt_1", "payment_intent.created", 5)
    batch.part(OUTBOX).webhook_events.append(seen)
    batch.part(REFUNDS).refunds[(7, 1)] = Refund(
        7, 1, 1, "card1", 10, "CNY", RefundStatus.PENDING, "", ((0, 1),), "k", "", "", "", 1, 1, 0
    )
    logistics = batch.part(LOGISTICS)
    logistics.shipments[(7, 1)] = PARCEL
    logistics.fulfilments[7] = FULFILMENT
    logistics.windows[1] = WINDOW
    logistics.tracking_events.append(
        TrackingEvent("swift", "evt_1", 7, 1, 4, "delivered", 9, "Hangzhou", 10, True)
    )
    returns = batch.part(RETURNS)
    returns.returns[RETURN.id] = RETURN
    returns.decisions[(OPENED.return_id, OPENED.stage.value)] = OPENED
    events = batch.part(EVENTS)
    events.endpoints[1] = endpoint(1, "m-alpha", enabled=False)
    events.events.append(OrderEvent(1, EventType.ORDER_PAID, b"{}", 9))
    events.created = batch.placed
    events.deliveries[1] = Delivery(
        1, 1, "m-alpha", 1, "order.paid", b"{}", 1, DeliveryState.PENDING, 1, 5, 500, "x", 5, 0
    )
    batch.token = 42
    return batch


def test_sqlite_writes_a_batch_in_the_order_of_before() -> None:
    batch = every_capability()
    before, after = sqlite._groups(batch, batch.all_deltas())
    written = [_write(sql) for sql, _rows, _checked in before]
    written += [("placed", "orders"), ("placed", "order_lines")]  # by the Rust writer, between
    written += [_write(sql) for sql, _rows, _checked in after]
    assert written == WRITES


class _Recorder:
    """An asyncpg connection that records the statements it is given (one row found by each
    UPDATE, and by each counted write of a combined statement)."""

    def __init__(self) -> None:
        self.written: list[tuple[str, str]] = []
        self.statements = 0

    async def execute(self, sql: str, *args: object) -> str:
        self.statements += 1
        self.written.append(_write(sql))
        return "UPDATE 1"

    async def executemany(self, sql: str, rows: object) -> None:
        self.statements += 1
        self.written.append(_write(sql))

    async def fetchrow(self, sql: str, *args: object) -> dict[str, int]:
        self.statements += 1
        self.written += _writes(sql)
        return {name: 1 for name in re.findall(r"\) AS (\w+)", sql.rsplit(" SELECT ", 1)[-1])}

    async def copy_records_to_table(self, table: str, **kwargs: object) -> None:
        self.statements += 1
        self.written.append(("INSERT", table))

    async def copy_to_table(self, table: str, **kwargs: object) -> None:
        self.statements += 1
        self.written.append(("placed", table))


def test_postgres_writes_a_batch_in_the_order_of_before() -> None:
    recorder = _Recorder()
    store = postgres.PostgresStore("postgresql://unused")
    batch = every_capability()
    assert not store._one_statement(batch, list(parts.writes(batch)))
    asyncio.run(store._write_batch(cast(Any, recorder), batch))
    # The token goes in the first statement with other writes (inside the transaction its place
    # changes nothing, and it needs no round trip of its own): here the stock UPDATE's, after
    # the orders' rows.
    written = recorder.written
    assert written[10] == ("INSERT", "intake_commits")
    del written[10]
    written.append(("INSERT", "intake_commits"))
    # Small batches' orders go in one INSERT from arrays, beside the stock UPDATE: name the Rust
    # intake's rows so.
    assert written[8:10] == [("INSERT", "orders"), ("INSERT", "order_lines")]
    written[8:10] = [("placed", "orders"), ("placed", "order_lines")]
    assert written == WRITES


def test_postgres_writes_a_single_order_batch_in_one_statement() -> None:
    """The single-order path's batch (placed orders, their stock, the token) under a fence, on
    a node alone and on a cluster node: one statement, its writes in the order of before (the
    fence first, the stock rows before the lease rows, then the rows and the token)."""
    for lease_node, leases in ((None, []), (3, [("UPDATE", "stock_leases")])):
        recorder = _Recorder()
        store = postgres.PostgresStore("postgresql://unused")
        store.fence, store.lease_node = (3, 7), lease_node
        batch = WriteBatch(placed=placed(order(1, line(0)), order(2, line(0))), token=42)
        assert store._one_statement(batch, [])  # so it is committed without BEGIN and COMMIT
        asyncio.run(store._write_batch(cast(Any, recorder), batch))
        assert recorder.statements == 1
        assert recorder.written == [
            ("UPDATE", "node_leases"),
            ("UPDATE", "stock"),
            *leases,
            ("INSERT", "orders"),
            ("INSERT", "order_lines"),
            ("INSERT", "intake_commits"),
        ]


def test_postgres_copies_a_large_batch_and_keeps_the_order() -> None:
    """From ``copy_threshold`` orders on, the rows go by COPY: the fence, the stock UPDATE and
    the token share a statement before them."""
    recorder = _Recorder()
    store = postgres.PostgresStore("postgresql://unused", copy_threshold=2)
    store.fence = (3, 7)
    batch = WriteBatch(placed=placed(order(1, line(0)), order(2, line(0))), token=42)
    asyncio.run(store._write_batch(cast(Any, recorder), batch))
    assert recorder.statements == 3
    assert recorder.written == [
        ("UPDATE", "node_leases"),
        ("UPDATE", "stock"),
        ("INSERT", "intake_commits"),
        ("placed", "orders"),
        ("placed", "order_lines"),
    ]
