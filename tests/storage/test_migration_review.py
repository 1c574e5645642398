"""Migration 14 (risk decisions, orders in review) on a database that already holds orders:
``in_review`` is refused before it and accepted after, the stored orders are untouched, and
the risk_decisions table takes the Rust writers' rows (the first 11 columns, by name)."""

import pytest

from pyorder.model import WriteBatch
from pyorder.orders.model import OrderStatus, StatusChange
from pyorder.storage import migrations
from pyorder.storage import postgres as postgres_store
from pyorder.storage import sqlite as sqlite_store
from pyorder.storage.base import Store
from pyorder.storage.migrations import MIGRATIONS, Migration, pending

from .backends import Backend
from .records import catalog, order

REVIEW = 14
V13_SKU_COLUMNS = "id, merchant, title, price, currency, limit_per_buyer, created_ms, category"


def _up_to(version: int) -> tuple[Migration, ...]:
    return tuple(m for m in MIGRATIONS if m.version <= version)


def _at_13(store: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``store`` a database at version 13 holding two orders (one paid, one pending)."""
    older = _up_to(REVIEW - 1)
    with monkeypatch.context() as m:
        for module in (sqlite_store, postgres_store):
            m.setattr(module, "pending", lambda current: pending(current, older))

        full = catalog()

        async def open_empty(s: Store) -> None:
            await s.commit(WriteBatch(warehouses=full.warehouses, regions=full.regions))

        async def fill(s: Store) -> None:
            await s.commit(WriteBatch(stock_rows=full.stock_rows))
            paid = order(1, status=OrderStatus.PAID)
            await s.commit(WriteBatch(orders=[paid, order(2)]))

        store.run(open_empty)
        for sku in full.skus:  # the columns of version 13 (this code writes later ones)
            store.query(
                f"INSERT INTO skus ({V13_SKU_COLUMNS}) VALUES ({sku.id}, '{sku.merchant}',"
                f" 'item', {sku.price}, '{sku.currency}', 0, {sku.created_ms}, '')"
            )
        store.run(fill)
    assert store.query("SELECT MAX(version) FROM schema_migrations") == [(REVIEW - 1,)]


def _set_status(store: Backend, status: str) -> None:
    store.query(f"UPDATE orders SET status = '{status}' WHERE id = 2")


def _decision_sql(order_id: int, three_ds: str) -> str:
    return (
        "INSERT INTO risk_decisions (id, buyer, merchant, at_ms, outcome, three_ds, score,"
        " model, decided_by, fired, reasons) VALUES"
        f" ({order_id}, 'buyer-1', 'merchant:m-alpha', 5, 'review', {three_ds}, 70,"
        """ 'gbt-1', 'score', '["rule_3"]',"""
        """ '[{"feature": "amount", "value": 120.0, "contribution": 0.5}]')"""
    )


def test_in_review_is_refused_at_13_and_taken_after_14(
    store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_13(store, monkeypatch)
    with pytest.raises(Exception, match=r"(?i)check"):
        _set_status(store, "in_review")

    async def migrate_and_hold(s: Store) -> int:
        # The connection that migrated writes the new status at once (SQLite: its schema was
        # reloaded), and a new order in review is taken.
        change = StatusChange(2, OrderStatus.PENDING_PAYMENT, OrderStatus.IN_REVIEW, 7)
        await s.commit(WriteBatch(status_changes=[change]))
        await s.commit(WriteBatch(orders=[order(3, status=OrderStatus.IN_REVIEW)]))
        return await s.schema_version()

    assert store.run(migrate_and_hold) == migrations.LATEST
    after = store.query("SELECT id, status, total, deadline_ms FROM orders ORDER BY id")
    assert [(r[0], r[1]) for r in after] == [(1, "paid"), (2, "in_review"), (3, "in_review")]
    assert after[0][2:] == (order(1).total, order(1).deadline_ms)
    with pytest.raises(Exception, match=r"(?i)check"):
        _set_status(store, "on_hold")  # still a CHECK: only in_review was added

    async def held(s: Store) -> list[tuple[int, str]]:
        snap = await s.load()  # the rebuild reads orders in review as held
        return [(o.id, o.status.value) for o in snap.pending_orders]

    assert store.run(held) == [(2, "in_review"), (3, "in_review")]


def test_the_orders_table_stays_strict_and_its_index_covers_in_review(
    store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_13(store, monkeypatch)

    async def nothing(s: Store) -> None:
        return None

    store.run(nothing)
    if store.name == "sqlite":
        sql = store.query("SELECT sql FROM sqlite_master WHERE name = 'orders'")[0][0]
        assert sql.rstrip().endswith("STRICT")
        assert "'in_review'" in sql
        index = store.query("SELECT sql FROM sqlite_master WHERE name = 'orders_pending'")[0][0]
        assert store.query("PRAGMA integrity_check") == [("ok",)]
    else:
        index = store.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'orders_pending'")[
            0
        ][0]
    assert "in_review" in index
    assert "pending_payment" in index


def test_risk_decisions_take_the_writers_columns(
    store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_13(store, monkeypatch)

    async def nothing(s: Store) -> None:
        return None

    store.run(nothing)
    three_ds = "1" if store.name == "sqlite" else "true"
    store.query(_decision_sql(2, three_ds))
    rows = store.query(
        "SELECT id, outcome, score, review, reviewer, reviewed_ms FROM risk_decisions"
    )
    assert rows == [(2, "review", 70, None, None, None)]
    with pytest.raises(Exception, match=r"(?i)check"):
        store.query("UPDATE risk_decisions SET review = 'maybe' WHERE id = 2")
    with pytest.raises(Exception, match=r"(?i)check"):
        store.query(_decision_sql(3, three_ds).replace("'review'", "'hold'"))
    if store.name == "sqlite":
        with pytest.raises(Exception, match=r"(?i)check"):
            store.query(_decision_sql(4, "2"))
