"""Versioned schema migrations, one logical schema written for SQLite and for PostgreSQL.

Each ``Migration`` is applied once, in version order, inside one transaction that also records
it in ``schema_migrations(version, applied_ms)``. The backends run ``pending()`` on open; a
database whose version is newer than ``LATEST`` is refused with ``SchemaTooNewError``. A
released migration is never edited: a change to the schema is a new, higher version.

Types: ids, money (minor units) and times (ms since the Unix epoch, UTC) are 64-bit integers
(``INTEGER`` in SQLite's STRICT tables, ``BIGINT`` in PostgreSQL). The address is JSON text in
SQLite and ``jsonb`` in PostgreSQL; a stored response body is ``BLOB`` / ``bytea``.
"""

from dataclasses import dataclass
from typing import Literal

from pyorder.storage.base import StorageError

Dialect = Literal["sqlite", "postgres"]


class SchemaTooNewError(StorageError):
    """The database was migrated by a newer pyorder than this one; refuse to touch it."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    """Statements for SQLite, run in order (one statement per string)."""
    postgres: tuple[str, ...]
    """Statements for PostgreSQL, run in order (one statement per string)."""

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


BOOTSTRAP: dict[Dialect, str] = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL) STRICT"
    ),
    "postgres": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)"
    ),
}
"""Creates the version table itself; runs before the versioned steps, and is idempotent."""

CURRENT_VERSION_SQL = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"

_STATUS_CHECK = "CHECK (status IN ('pending_payment', 'paid', 'cancelled', 'expired'))"

# Version 1: the initial schema. Foreign keys only where they cost nothing on the hot path:
# the low-volume tables (regions, stock) in both backends, and order lines -> orders in SQLite
# only (a rowid probe there, no measurable cost). In PostgreSQL that key fires a trigger per
# line that locks the order row, measured at -17% on COPY of 1,000-order batches, for a fact the
# store itself guarantees (lines are written with their order, from the same record). Order
# lines carry no key to skus/warehouses: two probes per line for what the core guarantees.
_V1_SQLITE = (
    "CREATE TABLE warehouses ("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL) STRICT",
    "CREATE TABLE regions ("
    " region TEXT NOT NULL, rank INTEGER NOT NULL,"
    " warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    " PRIMARY KEY (region, rank)) STRICT, WITHOUT ROWID",
    "CREATE TABLE skus ("
    " id INTEGER PRIMARY KEY, merchant TEXT NOT NULL, title TEXT NOT NULL,"
    " price INTEGER NOT NULL, currency TEXT NOT NULL, limit_per_buyer INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL) STRICT",
    "CREATE INDEX skus_merchant ON skus (merchant, id)",
    "CREATE TABLE stock ("
    " sku INTEGER NOT NULL REFERENCES skus(id),"
    " warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    " on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, sold INTEGER NOT NULL,"
    " PRIMARY KEY (sku, warehouse)) STRICT, WITHOUT ROWID",
    "CREATE TABLE orders ("
    " id INTEGER PRIMARY KEY, buyer TEXT NOT NULL,"
    f" status TEXT NOT NULL {_STATUS_CHECK},"
    " currency TEXT NOT NULL, total INTEGER NOT NULL, region TEXT NOT NULL,"
    " address TEXT NOT NULL, reservation INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    " deadline_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL) STRICT",
    "CREATE INDEX orders_buyer ON orders (buyer, id)",
    "CREATE INDEX orders_pending ON orders (id) WHERE status = 'pending_payment'",
    "CREATE TABLE order_lines ("
    " order_id INTEGER NOT NULL REFERENCES orders(id), line_no INTEGER NOT NULL,"
    " sku INTEGER NOT NULL, warehouse INTEGER NOT NULL, quantity INTEGER NOT NULL,"
    " unit_price INTEGER NOT NULL, merchant TEXT NOT NULL,"
    " PRIMARY KEY (order_id, line_no)) STRICT, WITHOUT ROWID",
    "CREATE INDEX order_lines_merchant ON order_lines (merchant, order_id)",
    "CREATE TABLE idempotency ("
    " principal TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
    " status INTEGER NOT NULL, body BLOB NOT NULL, created_ms INTEGER NOT NULL,"
    " PRIMARY KEY (principal, key)) STRICT, WITHOUT ROWID",
    "CREATE INDEX idempotency_created ON idempotency (created_ms)",
)

_V1_POSTGRES = (
    "CREATE TABLE warehouses (id BIGINT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL)",
    "CREATE TABLE regions ("
    " region TEXT NOT NULL, rank INTEGER NOT NULL,"
    " warehouse BIGINT NOT NULL REFERENCES warehouses(id),"
    " PRIMARY KEY (region, rank))",
    "CREATE TABLE skus ("
    " id BIGINT PRIMARY KEY, merchant TEXT NOT NULL, title TEXT NOT NULL,"
    " price BIGINT NOT NULL, currency TEXT NOT NULL, limit_per_buyer BIGINT NOT NULL,"
    " created_ms BIGINT NOT NULL)",
    "CREATE INDEX skus_merchant ON skus (merchant, id)",
    "CREATE TABLE stock ("
    " sku BIGINT NOT NULL REFERENCES skus(id),"
    " warehouse BIGINT NOT NULL REFERENCES warehouses(id),"
    " on_hand BIGINT NOT NULL, reserved BIGINT NOT NULL, sold BIGINT NOT NULL,"
    " PRIMARY KEY (sku, warehouse))",
    "CREATE TABLE orders ("
    " id BIGINT PRIMARY KEY, buyer TEXT NOT NULL,"
    f" status TEXT NOT NULL {_STATUS_CHECK},"
    " currency TEXT NOT NULL, total BIGINT NOT NULL, region TEXT NOT NULL,"
    " address JSONB NOT NULL, reservation BIGINT NOT NULL, created_ms BIGINT NOT NULL,"
    " deadline_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL)",
    "CREATE INDEX orders_buyer ON orders (buyer, id)",
    "CREATE INDEX orders_pending ON orders (id) WHERE status = 'pending_payment'",
    "CREATE TABLE order_lines ("
    " order_id BIGINT NOT NULL, line_no INTEGER NOT NULL,"
    " sku BIGINT NOT NULL, warehouse BIGINT NOT NULL, quantity BIGINT NOT NULL,"
    " unit_price BIGINT NOT NULL, merchant TEXT NOT NULL,"
    " PRIMARY KEY (order_id, line_no))",
    "CREATE INDEX order_lines_merchant ON order_lines (merchant, order_id)",
    "CREATE TABLE idempotency ("
    " principal TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
    " status INTEGER NOT NULL, body BYTEA NOT NULL, created_ms BIGINT NOT NULL,"
    " PRIMARY KEY (principal, key))",
    "CREATE INDEX idempotency_created ON idempotency (created_ms)",
)

# Version 2: one row per committed write batch, so that a commit whose reply was lost (the
# connection died after COMMIT) can be told apart from one that did not happen. Old rows are
# purged with old idempotency keys.
_V2_SQLITE = (
    "CREATE TABLE intake_commits ("
    " token INTEGER PRIMARY KEY, committed_ms INTEGER NOT NULL) STRICT",
    "CREATE INDEX intake_commits_ms ON intake_commits (committed_ms)",
)
_V2_POSTGRES = (
    "CREATE TABLE intake_commits (token BIGINT PRIMARY KEY, committed_ms BIGINT NOT NULL)",
    "CREATE INDEX intake_commits_ms ON intake_commits (committed_ms)",
)


def _v3(integer: str, strict: str) -> tuple[str, ...]:
    """Version 3 in one dialect: ``integer`` is the 64-bit type, ``strict`` the table suffix."""
    i = integer
    return (
        "CREATE TABLE payments ("
        f" order_id {i} PRIMARY KEY, buyer TEXT NOT NULL, currency TEXT NOT NULL,"
        f" amount {i} NOT NULL, method TEXT NOT NULL, status TEXT NOT NULL,"
        f" authorized {i} NOT NULL, charged {i} NOT NULL, refunded {i} NOT NULL,"
        f" attempts {i} NOT NULL, paid_attempt {i} NOT NULL, flag TEXT NOT NULL,"
        f" created_ms {i} NOT NULL, updated_ms {i} NOT NULL){strict}",
        "CREATE TABLE payment_attempts ("
        f" order_id {i} NOT NULL, number {i} NOT NULL, provider TEXT NOT NULL,"
        " method TEXT NOT NULL, payment_method TEXT NOT NULL, idempotency_key TEXT NOT NULL,"
        f" provider_payment_id TEXT NOT NULL, status TEXT NOT NULL, amount {i} NOT NULL,"
        f" currency TEXT NOT NULL, amount_received {i} NOT NULL, refund_id TEXT NOT NULL,"
        f" refund_status TEXT NOT NULL, amount_refunded {i} NOT NULL, error TEXT NOT NULL,"
        f" created_ms {i} NOT NULL, updated_ms {i} NOT NULL,"
        f" PRIMARY KEY (order_id, number)){strict}",
        "CREATE INDEX payment_attempts_provider_id"
        " ON payment_attempts (provider, provider_payment_id)",
        "CREATE TABLE webhook_events ("
        f" provider TEXT NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL,"
        f" received_ms {i} NOT NULL, PRIMARY KEY (provider, event_id)){strict}",
        "CREATE TABLE outbox ("
        f" order_id {i} NOT NULL, attempt {i} NOT NULL, kind TEXT NOT NULL,"
        f" done {i} NOT NULL, created_ms {i} NOT NULL, updated_ms {i} NOT NULL,"
        f" PRIMARY KEY (order_id, attempt, kind)){strict}",
        "CREATE INDEX outbox_pending ON outbox (order_id) WHERE done = 0",
    )


# Version 3: payments. One row per order's payment (amounts), one per attempt at a provider,
# the provider events already applied (de-duplication), and the outbox of provider calls owed.
_V3_SQLITE = _v3("INTEGER", " STRICT")
_V3_POSTGRES = _v3("BIGINT", "")


def _v4(integer: str, strict: str) -> tuple[str, ...]:
    """Version 4 in one dialect: ``integer`` is the 64-bit type, ``strict`` the table suffix."""
    i = integer
    return (
        "CREATE TABLE shipments ("
        f" order_id {i} NOT NULL, parcel {i} NOT NULL, warehouse {i} NOT NULL,"
        " carrier TEXT NOT NULL, status TEXT NOT NULL, idempotency_key TEXT NOT NULL,"
        " carrier_shipment_id TEXT NOT NULL, tracking_number TEXT NOT NULL,"
        f" window_id {i} NOT NULL, last_sequence {i} NOT NULL, last_event_ms {i} NOT NULL,"
        f" error TEXT NOT NULL, created_ms {i} NOT NULL, updated_ms {i} NOT NULL,"
        f" delivered_ms {i} NOT NULL, PRIMARY KEY (order_id, parcel)){strict}",
        "CREATE TABLE fulfilments ("
        f" order_id {i} PRIMARY KEY, parcels {i} NOT NULL, status TEXT NOT NULL,"
        f" window_id {i} NOT NULL, paid_ms {i} NOT NULL, delivered_ms {i} NOT NULL,"
        f" fulfilment_ms {i} NOT NULL, updated_ms {i} NOT NULL){strict}",
        # The CHECK is the durable guard of "never oversold": a batch that would book a window
        # past its capacity does not commit.
        "CREATE TABLE delivery_windows ("
        f" id {i} PRIMARY KEY, region TEXT NOT NULL, start_ms {i} NOT NULL,"
        f" end_ms {i} NOT NULL, capacity {i} NOT NULL, booked {i} NOT NULL,"
        f" created_ms {i} NOT NULL, CHECK (booked >= 0 AND booked <= capacity)){strict}",
        "CREATE INDEX delivery_windows_region ON delivery_windows (region, start_ms)",
        "CREATE TABLE tracking_events ("
        f" carrier TEXT NOT NULL, event_id TEXT NOT NULL, order_id {i} NOT NULL,"
        f" parcel {i} NOT NULL, sequence {i} NOT NULL, status TEXT NOT NULL,"
        f" occurred_ms {i} NOT NULL, location TEXT NOT NULL, received_ms {i} NOT NULL,"
        f" applied {i} NOT NULL, PRIMARY KEY (carrier, event_id)){strict}",
        "CREATE INDEX tracking_events_order ON tracking_events (order_id, parcel, sequence)",
    )


# Version 4: logistics. One row per parcel, per order's fulfilment, per delivery window, and
# the tracking events received (the carrier bookings owed go in the outbox of version 3).
_V4_SQLITE = _v4("INTEGER", " STRICT")
_V4_POSTGRES = _v4("BIGINT", "")


def _v5(integer: str, strict: str) -> tuple[str, ...]:
    """Version 5 in one dialect: ``integer`` is the 64-bit type, ``strict`` the table suffix."""
    i = integer
    return (
        "CREATE TABLE refunds ("
        f" order_id {i} NOT NULL, number {i} NOT NULL, attempt {i} NOT NULL,"
        f" provider TEXT NOT NULL, amount {i} NOT NULL, currency TEXT NOT NULL,"
        " status TEXT NOT NULL, reason TEXT NOT NULL, lines TEXT NOT NULL,"
        " idempotency_key TEXT NOT NULL, provider_refund_id TEXT NOT NULL,"
        f" requested_by TEXT NOT NULL, error TEXT NOT NULL, created_ms {i} NOT NULL,"
        f" updated_ms {i} NOT NULL, settled_ms {i} NOT NULL,"
        f" PRIMARY KEY (order_id, number), CHECK (amount > 0)){strict}",
    )


# Version 5: refunds of orders (on cancel, and partial ones by amount or line); their provider
# calls go in the outbox of version 3 (kind ``order_refund``).
_V5_SQLITE = _v5("INTEGER", " STRICT")
_V5_POSTGRES = _v5("BIGINT", "")


def _v6(integer: str, strict: str) -> tuple[str, ...]:
    """Version 6 in one dialect: ``integer`` is the 64-bit type, ``strict`` the table suffix."""
    i = integer
    return (
        "ALTER TABLE skus ADD COLUMN category TEXT NOT NULL DEFAULT ''",
        "CREATE TABLE returns ("
        f" id {i} PRIMARY KEY, order_id {i} NOT NULL, buyer TEXT NOT NULL,"
        f" merchant TEXT NOT NULL, warehouse {i} NOT NULL,"
        " status TEXT NOT NULL, reason TEXT NOT NULL, lines TEXT NOT NULL,"
        f" amount {i} NOT NULL, currency TEXT NOT NULL, carrier TEXT NOT NULL,"
        " idempotency_key TEXT NOT NULL, carrier_shipment_id TEXT NOT NULL,"
        f" tracking_number TEXT NOT NULL, shipping_cost {i} NOT NULL,"
        " cost_borne_by TEXT NOT NULL, parcel_status TEXT NOT NULL,"
        f" last_sequence {i} NOT NULL, refund_number {i} NOT NULL,"
        " reviewed_by TEXT NOT NULL, review_reason TEXT NOT NULL, error TEXT NOT NULL,"
        f" created_ms {i} NOT NULL, updated_ms {i} NOT NULL, picked_up_ms {i} NOT NULL,"
        f" refunded_ms {i} NOT NULL, arrived_ms {i} NOT NULL, restocked_ms {i} NOT NULL,"
        f" CHECK (amount > 0), CHECK (shipping_cost >= 0)){strict}",
        "CREATE INDEX returns_order ON returns (order_id, id)",
        "CREATE INDEX returns_buyer ON returns (buyer, created_ms)",
        "CREATE INDEX returns_status ON returns (status, id)",
        # The lightning rules count a buyer's delivered orders (payments joined to fulfilments).
        "CREATE INDEX payments_buyer ON payments (buyer, order_id)",
        # One row per evaluation of the lightning rules: when the return is opened and when
        # the carrier scans its pickup; ``rules`` is the JSON list of every rule's result.
        "CREATE TABLE return_decisions ("
        f" return_id {i} NOT NULL, stage TEXT NOT NULL, lightning {i} NOT NULL,"
        f" rules TEXT NOT NULL, decided_ms {i} NOT NULL,"
        f" PRIMARY KEY (return_id, stage)){strict}",
    )


# Version 6: no-reason returns. A category on SKUs (return windows and rules go by it), one
# row per return (its parcel back, the cost the platform bears, its review and refund), and
# the lightning decisions with the rules that fired. Carrier bookings of returns go in the
# outbox of version 3 (kind ``return_booking``); refunds are rows of version 5.
_V6_SQLITE = _v6("INTEGER", " STRICT")
_V6_POSTGRES = _v6("BIGINT", "")


def _v7(integer: str, strict: str, serial: str) -> tuple[str, ...]:
    """Version 7 in one dialect: ``integer`` is the 64-bit type, ``strict`` the table suffix,
    ``serial`` the definition of an id the database assigns in insertion order."""
    i = integer
    return (
        "CREATE TABLE webhook_endpoints ("
        f" id {i} PRIMARY KEY, merchant TEXT NOT NULL, url TEXT NOT NULL,"
        " secret TEXT NOT NULL, event_types TEXT NOT NULL, description TEXT NOT NULL,"
        f" enabled {i} NOT NULL, created_ms {i} NOT NULL, updated_ms {i} NOT NULL){strict}",
        "CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant)",
        # No foreign key to webhook_endpoints: a check per row on the order-intake path, for
        # a fact the fan-out guarantees (it selects the endpoint it names).
        "CREATE TABLE order_events ("
        f" id {serial}, endpoint_id {i} NOT NULL, merchant TEXT NOT NULL,"
        f" order_id {i} NOT NULL, type TEXT NOT NULL, payload TEXT, created_ms {i} NOT NULL,"
        " state TEXT NOT NULL"
        " CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),"
        f" attempts {i} NOT NULL, next_attempt_ms {i} NOT NULL, last_status {i} NOT NULL,"
        f" last_error TEXT NOT NULL, updated_ms {i} NOT NULL, delivered_ms {i} NOT NULL){strict}",
        # What each endpoint's dispatcher reads next (small: only what is not delivered yet).
        "CREATE INDEX order_events_pending ON order_events (endpoint_id, id)"
        " WHERE state = 'pending'",
        "CREATE INDEX order_events_endpoint ON order_events (endpoint_id, id)",
    )


# Version 7: order events. Merchants' webhook endpoints, and the outbox of the events of their
# orders: one row per (event, endpoint), written in the transaction of the state change, with
# its delivery state. The row id is the event id receivers de-duplicate by, so it is never
# reused (SQLite AUTOINCREMENT, a PostgreSQL identity).
_V7_SQLITE = _v7("INTEGER", " STRICT", "INTEGER PRIMARY KEY AUTOINCREMENT")
_V7_POSTGRES = _v7("BIGINT", "", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")


# Version 8: node leases (docs/scale-out.md). One row per order-ID node number ever claimed on
# PostgreSQL: who holds it, the fencing epoch (raised at each claim, checked by every commit of
# the holder), and when the holder last wrote (the database's clock), which bounds the time of
# the last order ID minted under that number. Liveness is not in the row: it is the holder's
# session-level advisory lock, which PostgreSQL drops the moment the holder's session ends.
# SQLite gets the table too (one logical schema) but is single-process and never claims.
def _v8(integer: str, strict: str) -> tuple[str, ...]:
    i = integer
    return (
        f"CREATE TABLE node_leases (node {i} PRIMARY KEY CHECK (node BETWEEN 0 AND 255),"
        f" epoch {i} NOT NULL, holder TEXT NOT NULL, mode TEXT NOT NULL"
        " CHECK (mode IN ('solo', 'cluster')),"
        f" acquired_ms {i} NOT NULL, seen_ms {i} NOT NULL){strict}",
    )


_V8_SQLITE = _v8("INTEGER", " STRICT")
_V8_POSTGRES = _v8("BIGINT", "")


# Version 9: stock leases (docs/scale-out.md). ``stock.leased`` counts the units granted to
# cluster nodes and not reserved, sold or returned yet; ``stock_leases`` says which node holds
# how many (their sum is ``stock.leased``). The pool a node can lease from is
# ``on_hand - leased - reserved - sold``. Solo nodes (and SQLite) never lease: both stay 0.
def _v9(integer: str, strict: str) -> tuple[str, ...]:
    i = integer
    return (
        f"ALTER TABLE stock ADD COLUMN leased {i} NOT NULL DEFAULT 0",
        f"CREATE TABLE stock_leases (sku {i} NOT NULL, warehouse {i} NOT NULL,"
        f" node {i} NOT NULL, units {i} NOT NULL CHECK (units >= 0), updated_ms {i} NOT NULL,"
        f" PRIMARY KEY (sku, warehouse, node)){strict}",
        "CREATE INDEX stock_leases_node ON stock_leases (node)",
    )


_V9_SQLITE = _v9("INTEGER", " STRICT")
_V9_POSTGRES = _v9("BIGINT", "")


# Version 10: claims of Idempotency-Keys (``pyorder.storage.key_claims``, docs/scale-out.md).
# In cluster mode a node inserts the key's row before it runs the request, so the same key
# sent to two nodes runs once; the row names the node number and epoch, so a dead node's
# claims can be told apart and taken over. SQLite gets the table too (one logical schema) but
# is single-process and never claims.
def _v10(integer: str, strict: str) -> tuple[str, ...]:
    i = integer
    return (
        "CREATE TABLE idempotency_claims ("
        f" principal TEXT NOT NULL, key TEXT NOT NULL, node {i} NOT NULL, epoch {i} NOT NULL,"
        f" claimed_ms {i} NOT NULL, PRIMARY KEY (principal, key)){strict}",
        "CREATE INDEX idempotency_claims_claimed ON idempotency_claims (claimed_ms)",
    )


_V10_SQLITE = _v10("INTEGER", " STRICT")
_V10_POSTGRES = _v10("BIGINT", "")


# Version 11: where a cluster node takes the requests other nodes forward to it (the order's
# owner serves its payments, parcels, returns and cancel: ``pyorder.server.forwarding``,
# docs/scale-out.md). Empty for a node that takes none (solo nodes, SQLite).
_V11 = ("ALTER TABLE node_leases ADD COLUMN url TEXT NOT NULL DEFAULT ''",)


# Version 12: claims of purchase limits across nodes (``pyorder.storage.limit_claims``,
# docs/scale-out.md). In cluster mode a node claims the units of an order's limited SKUs for
# its buyer before the order is staged, and the order's commit deletes the claim in its own
# transaction (on PostgreSQL through ``settle_limit_claim``, which fails the commit when the
# claim was taken over meanwhile). SQLite gets the table too (one logical schema) but is
# single-process and never claims.
def _v12(integer: str, strict: str) -> tuple[str, ...]:
    i = integer
    return (
        "CREATE TABLE limit_claims ("
        f" claim {i} NOT NULL, sku {i} NOT NULL, buyer TEXT NOT NULL,"
        f" units {i} NOT NULL CHECK (units > 0), node {i} NOT NULL, epoch {i} NOT NULL,"
        f" claimed_ms {i} NOT NULL, PRIMARY KEY (claim, sku)){strict}",
        "CREATE INDEX limit_claims_buyer ON limit_claims (sku, buyer)",
    )


_V12_SQLITE = _v12("INTEGER", " STRICT")
_V12_POSTGRES = (
    *_v12("BIGINT", ""),
    "CREATE FUNCTION settle_limit_claim(order_id BIGINT, skus BIGINT) RETURNS void"
    " LANGUAGE plpgsql AS $$ DECLARE deleted BIGINT; BEGIN"
    " DELETE FROM limit_claims WHERE claim = order_id;"
    " GET DIAGNOSTICS deleted = ROW_COUNT;"
    " IF deleted <> skus THEN RAISE EXCEPTION"
    " 'the purchase-limit claim of order % was taken over (% of % rows found):"
    " the batch was not written', order_id, deleted, skus; END IF; END $$",
)


# Version 13: risk rules and lists managed over the API (``pyorder.risk.storage``,
# docs/risk.md). Rules (deleted ones kept, flagged, so ids are never reused), the allow/block
# list entries, one row of platform thresholds with the configuration's version (raised by every
# change: cluster nodes compare it to know they must read the rest again), and the append-only
# audit log, whose ids the database assigns in insertion order.
def _v13(integer: str, strict: str, serial: str) -> tuple[str, ...]:
    i = integer
    return (
        "CREATE TABLE risk_rules ("
        f" id {i} PRIMARY KEY, owner TEXT NOT NULL,"
        " action TEXT NOT NULL CHECK (action IN ('request_3ds', 'allow', 'block', 'review')),"
        f" condition_text TEXT NOT NULL, description TEXT NOT NULL, deleted {i} NOT NULL,"
        f" created_ms {i} NOT NULL, updated_ms {i} NOT NULL){strict}",
        "CREATE TABLE risk_list_entries ("
        " list_name TEXT NOT NULL CHECK (list_name IN ('allow', 'block')),"
        " kind TEXT NOT NULL, value TEXT NOT NULL, owner TEXT NOT NULL,"
        f" added_ms {i} NOT NULL, PRIMARY KEY (list_name, kind, value)){strict}",
        "CREATE TABLE risk_settings ("
        f" id {i} PRIMARY KEY CHECK (id = 1), block {i} NOT NULL, review {i} NOT NULL,"
        f" version {i} NOT NULL, updated_ms {i} NOT NULL){strict}",
        "INSERT INTO risk_settings (id, block, review, version, updated_ms)"
        " VALUES (1, 75, 65, 0, 0)",
        "CREATE TABLE risk_audit ("
        f" id {serial}, at_ms {i} NOT NULL, principal TEXT NOT NULL, owner TEXT NOT NULL,"
        " action TEXT NOT NULL, subject TEXT NOT NULL, before_json TEXT,"
        f" after_json TEXT){strict}",
        "CREATE INDEX risk_audit_owner ON risk_audit (owner, id)",
    )


_V13_SQLITE = _v13("INTEGER", " STRICT", "INTEGER PRIMARY KEY AUTOINCREMENT")
_V13_POSTGRES = _v13("BIGINT", "", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")


# Version 14: risk decisions and the review queue (``pyorder.risk.decisions``, docs/risk.md).
# One row per decision at order intake, keyed by the order's id (a blocked attempt keeps the id
# it was given, and no order row has it), written by the Rust writers with the orders it
# decided; the review columns are the review queue's (NULL until a reviewer, or the review
# hold's expiry, decides). Orders held for review take the status ``in_review`` (units
# reserved), so the status CHECK widens and the partial index of held orders covers it.
#
# SQLite cannot alter a CHECK. The orders table is widened by SQLite's documented edit of the
# schema text (sqlite.org/lang_altertable.html, "making other kinds of table schema changes"),
# not by the 12-step rebuild: a CHECK that only widens leaves every stored row valid and the
# file format unchanged, so the edit is O(1) whatever the table holds, where a rebuild copies
# every order and its index, and inside the migration's transaction (where ``foreign_keys``
# cannot be turned off) dropping the old table would break the key of ``order_lines``. The
# table stays STRICT (the text is edited in place). ``writable_schema = RESET`` reloads this
# connection's schema (the Rust writer goes on with it); the DDL after it raises the schema
# cookie, so other connections reload it too.
_V14_STATUS_CHECK = (
    "CHECK (status IN ('pending_payment', 'in_review', 'paid', 'cancelled', 'expired'))"
)


def _v14(integer: str, strict: str, boolean: str, json: str) -> tuple[str, ...]:
    """The new table and indexes of version 14 in one dialect: ``integer`` is the 64-bit type,
    ``strict`` the table suffix, ``boolean`` and ``json`` the types of the flag and the JSON
    arrays."""
    i = integer
    return (
        "CREATE TABLE risk_decisions ("
        f" id {i} PRIMARY KEY, buyer TEXT NOT NULL, merchant TEXT NOT NULL, at_ms {i} NOT NULL,"
        " outcome TEXT NOT NULL CHECK (outcome IN ('allow', 'review', 'block')),"
        f" three_ds {boolean} NOT NULL, score INTEGER, model TEXT, decided_by TEXT NOT NULL,"
        f" fired {json} NOT NULL, reasons {json} NOT NULL,"
        " review TEXT CHECK (review IN ('approved', 'rejected', 'expired')),"
        f" reviewer TEXT, reviewed_ms {i}){strict}",
        # The open review queue, newest first: only what awaits a reviewer.
        "CREATE INDEX risk_decisions_open ON risk_decisions (id)"
        " WHERE outcome = 'review' AND review IS NULL",
        # No index by merchant: one more B-tree insert per order for a read no route makes
        # (a merchant reads a decision by its order's id, and its open reviews by the index
        # above); measured, it cost a third of the batch path's throughput with risk control.
        # The labels of reviewed decisions, for training (few: most orders are allowed).
        "CREATE INDEX risk_decisions_reviewed ON risk_decisions (id)"
        " WHERE review IN ('approved', 'rejected')",
        "DROP INDEX orders_pending",
        "CREATE INDEX orders_pending ON orders (id)"
        " WHERE status IN ('pending_payment', 'in_review')",
    )


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


_V14_SQLITE = (
    "PRAGMA writable_schema = ON",
    f"UPDATE sqlite_master SET sql = replace(sql, {_literal(_STATUS_CHECK)},"
    f" {_literal(_V14_STATUS_CHECK)}) WHERE type = 'table' AND name = 'orders'",
    "PRAGMA writable_schema = RESET",
    *_v14("INTEGER", " STRICT", "INTEGER CHECK (three_ds IN (0, 1))", "TEXT"),
)
_V14_POSTGRES = (
    "ALTER TABLE orders DROP CONSTRAINT orders_status_check",
    f"ALTER TABLE orders ADD CONSTRAINT orders_status_check {_V14_STATUS_CHECK}",
    # The JSON arrays as text, not jsonb: nothing queries into them, and a row per order
    # written as jsonb costs the server a JSON parse per row on the batch path.
    *_v14("BIGINT", "", "BOOLEAN", "TEXT"),
)

# Version 15: an attempt asks its provider for 3-D Secure when the order's risk decision asked
# for it (``pyorder.payments``, docs/payments.md). Stored, so that a resend after a restart
# carries the same body under the same Idempotency-Key. A constant default adds the column
# without rewriting the table on either store; PostgreSQL's boolean needs no CHECK (which would
# scan the table under its lock).
_V15_SQLITE = (
    "ALTER TABLE payment_attempts ADD COLUMN three_ds INTEGER NOT NULL DEFAULT 0"
    " CHECK (three_ds IN (0, 1))",
)
_V15_POSTGRES = ("ALTER TABLE payment_attempts ADD COLUMN three_ds BOOLEAN NOT NULL DEFAULT false",)

# Version 16: a SKU's release time (``Sku.release_ms``), a flash sale's start: orders before it
# are refused, and risk control reads the seconds from it to each order. NULL: on sale from its
# creation (every SKU made before this version). A nullable column without a default is added
# without rewriting the table on either store.
_V16_POSTGRES = ("ALTER TABLE skus ADD COLUMN release_ms BIGINT",)
_V16_SQLITE = ("ALTER TABLE skus ADD COLUMN release_ms INTEGER",)

# Version 17: risk control's check of a payment when it started (``Attempt.risk``, JSON text;
# empty when risk control was off), stored with the attempt it decided.
_V17 = ("ALTER TABLE payment_attempts ADD COLUMN risk TEXT NOT NULL DEFAULT ''",)

# Version 18: the features a decision held for review was decided on (``risk_decisions.features``,
# a JSON object of the catalogue's names; NULL for the others, and for decisions made before):
# the reviewer's verdict makes them a labelled example (``python -m pyorder.risk.labels``). A
# nullable column without a default is added without rewriting the table on either store.
_V18 = ("ALTER TABLE risk_decisions ADD COLUMN features TEXT",)

# Version 19: an allowed order's risk decision in its own row (``orders.risk``: JSON text of
# ``[score, model, decided_by, three_ds, fired, reasons]``, ``pyorder.risk.decisions``; NULL
# without risk control or when the decision has a ``risk_decisions`` row: held for review, or
# allowed before this version). A second row per order cost the batch path through HTTP 40 %
# of its throughput (BENCHMARKS.md). Nullable without a default: no table rewrite.
_V19 = ("ALTER TABLE orders ADD COLUMN risk TEXT",)


# Version 20: fraud reports of orders (a chargeback, a merchant's report: ``pyorder.risk.fraud``),
# one per order: with the allowed orders' decisions kept with their features (a sampled share,
# ``--risk-sample-allowed``) they are training labels. A new table only: nothing locked. (No
# index of the sampled decisions: building one scans ``risk_decisions`` under a lock that stops
# its writes, which before version 19 held a row per order; the export scans it instead.)
def _v20(integer: str, strict: str) -> tuple[str, ...]:
    return (
        "CREATE TABLE fraud_reports ("
        f" order_id {integer} PRIMARY KEY, merchant TEXT NOT NULL,"
        " source TEXT NOT NULL CHECK (source IN ('chargeback', 'merchant_report')),"
        f" reporter TEXT NOT NULL, reported_ms {integer} NOT NULL, note TEXT NOT NULL){strict}",
    )


# Version 21: an allowed order's risk decision packed (``orders.risk_packed``: MessagePack of
# ``[score, model, decided_by, three_ds, fired, reasons]``, ``core_rs/src/risk/packed.rs``,
# read by ``pyorder.risk.decisions.unpack_order_risk``), ~40 bytes where version 19's JSON text
# took ~140: most orders carry one, and a PostgreSQL commit's time grows with its bytes
# (BENCHMARKS.md). The core writes only this column from now on; ``risk`` keeps the decisions
# written by builds before this version and is read where this one is NULL. Nullable
# without a default: no table rewrite.
def _v21(binary: str) -> tuple[str, ...]:
    return (f"ALTER TABLE orders ADD COLUMN risk_packed {binary}",)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _V1_SQLITE, _V1_POSTGRES),
    Migration(2, "commit tokens of write batches", _V2_SQLITE, _V2_POSTGRES),
    Migration(3, "payments, attempts, webhook events, outbox", _V3_SQLITE, _V3_POSTGRES),
    Migration(
        4, "shipments, fulfilments, delivery windows, tracking events", _V4_SQLITE, _V4_POSTGRES
    ),
    Migration(5, "refunds of orders", _V5_SQLITE, _V5_POSTGRES),
    Migration(6, "sku categories, returns and their decisions", _V6_SQLITE, _V6_POSTGRES),
    Migration(7, "webhook endpoints and order events", _V7_SQLITE, _V7_POSTGRES),
    Migration(8, "node leases: order-ID node numbers and fencing epochs", _V8_SQLITE, _V8_POSTGRES),
    Migration(9, "stock leases of cluster nodes", _V9_SQLITE, _V9_POSTGRES),
    Migration(10, "claims of idempotency keys across nodes", _V10_SQLITE, _V10_POSTGRES),
    Migration(11, "the address of each cluster node for forwarded requests", _V11, _V11),
    Migration(12, "claims of purchase limits across nodes", _V12_SQLITE, _V12_POSTGRES),
    Migration(13, "risk rules, lists, thresholds and their audit log", _V13_SQLITE, _V13_POSTGRES),
    Migration(14, "risk decisions, the review queue, orders in review", _V14_SQLITE, _V14_POSTGRES),
    Migration(15, "payment attempts that ask for 3-D Secure", _V15_SQLITE, _V15_POSTGRES),
    Migration(16, "release times of SKUs (flash sales)", _V16_SQLITE, _V16_POSTGRES),
    Migration(17, "risk control's check of each payment attempt", _V17, _V17),
    Migration(18, "the features of decisions held for review (labels)", _V18, _V18),
    Migration(19, "the risk decisions of allowed orders in their rows", _V19, _V19),
    Migration(
        20,
        "fraud reports of orders",
        _v20("INTEGER", " STRICT"),
        _v20("BIGINT", ""),
    ),
    Migration(21, "the risk decisions of allowed orders packed", _v21("BLOB"), _v21("BYTEA")),
)
"""Every migration, in version order (versions 1, 2, 3, ... with no gaps)."""

LATEST = MIGRATIONS[-1].version


def pending(current: int, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[Migration]:
    """The migrations a database at version ``current`` still needs, in order.

    Raises ``SchemaTooNewError`` when the database is newer than the newest migration known.
    """
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise SchemaTooNewError(
            f"database schema is at version {current}, but this pyorder knows only up to "
            f"version {latest}: upgrade pyorder (refusing to open a newer database)"
        )
    return [m for m in migrations if m.version > current]


def _check_sequence(migrations: tuple[Migration, ...]) -> None:
    for expected, m in enumerate(migrations, start=1):
        if m.version != expected:
            raise AssertionError(f"migration versions must be 1, 2, 3, ...: got {m.version}")


_check_sequence(MIGRATIONS)
