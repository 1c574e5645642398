"""Migrations: applied once, in order, recorded; re-open is a no-op; a newer database refused."""

import asyncio
from pathlib import Path

import pytest

from pyorder.storage.base import StorageError, Store
from pyorder.storage.migrations import LATEST, MIGRATIONS, SchemaTooNewError, pending
from pyorder.storage.postgres import PostgresStore
from pyorder.storage.sqlite import SqliteStore

from .backends import Backend

TABLES = {
    "schema_migrations",
    "warehouses",
    "regions",
    "skus",
    "stock",
    "orders",
    "order_lines",
    "idempotency",
    "intake_commits",
    "payments",
    "payment_attempts",
    "webhook_events",
    "refunds",
    "outbox",
    "shipments",
    "fulfilments",
    "delivery_windows",
    "tracking_events",
    "returns",
    "return_decisions",
    "webhook_endpoints",
    "order_events",
    "node_leases",
    "stock_leases",
    "idempotency_claims",
    "limit_claims",
    "risk_rules",
    "risk_list_entries",
    "risk_settings",
    "risk_audit",
    "fraud_reports",
    "risk_decisions",
}


def tables(store: Backend) -> set[str]:
    if store.name == "sqlite":
        # (sqlite_sequence is SQLite's own: the last ids AUTOINCREMENT handed out.)
        rows = store.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    else:
        rows = store.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


def test_migrations_apply_once_and_reopen_is_a_noop(store: Backend) -> None:
    async def version(s: Store) -> int:
        return await s.schema_version()

    assert store.run(version) == LATEST
    assert tables(store) == TABLES
    first = store.query("SELECT version, applied_ms FROM schema_migrations ORDER BY version")
    assert [r[0] for r in first] == [m.version for m in MIGRATIONS]

    assert store.run(version) == LATEST
    assert (
        store.query("SELECT version, applied_ms FROM schema_migrations ORDER BY version") == first
    )


def test_a_newer_database_is_refused(store: Backend) -> None:
    async def nothing(s: Store) -> None:
        return None

    store.run(nothing)
    store.query(f"INSERT INTO schema_migrations (version, applied_ms) VALUES ({LATEST + 1}, 0)")
    with pytest.raises(SchemaTooNewError, match=f"version {LATEST + 1}") as err:
        store.run(nothing)
    assert isinstance(err.value, StorageError)


def test_pending_lists_what_is_missing_in_order() -> None:
    assert pending(0) == list(MIGRATIONS)
    assert pending(LATEST) == []
    with pytest.raises(SchemaTooNewError):
        pending(LATEST + 1)


def test_a_store_that_cannot_open_raises_storage_error(tmp_path: Path) -> None:
    for bad in (
        SqliteStore(tmp_path / "no-such-folder" / "pyorder.sqlite3"),
        PostgresStore("postgresql://postgres@127.0.0.1:1/nothing"),  # nothing listens on port 1
    ):
        with pytest.raises(StorageError):
            asyncio.run(bad.open())
