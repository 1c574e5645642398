"""The order events' part of a write batch and its reads, in both dialects (schema version 7).

Events are fanned out in SQL, inside the batch's transaction: a staged ``OrderEvent`` becomes
one ``order_events`` row per enabled endpoint, subscribed to its type, of a merchant holding a
line of the order (``INSERT ... SELECT`` over ``webhook_endpoints`` and ``order_lines``), or of
the one merchant it names (a refund of some merchants' lines). The
orders the Rust intake took (``WriteBatch.placed``) get their ``order.created`` rows the same
way from the order lines just inserted, selected by the batch's id range and this node's bits
of the id, so no Python object is made per order; their ``payload`` is NULL and rendered at
delivery from the order's row. Nothing here runs for a batch with no events: with no endpoint
registered, the write path is unchanged.

Group order within the batch: endpoints first (a fan-out sees the endpoints of its own
batch), then delivery outcomes, then the cancelling of a deleted endpoint's pending events
(after the outcomes, so a retry staged just before cannot revive one), then the fan-outs.
"""

from typing import Any

from pyorder._core import ORDER_ID_NODE_BITS, ORDER_ID_SEQUENCE_BITS
from pyorder.events.model import (
    ALL_TYPES,
    Delivery,
    DeliveryState,
    EventType,
    WebhookEndpoint,
)
from pyorder.kernel.unit import Row
from pyorder.model import WriteBatch
from pyorder.storage.codec import upsert_sql

ENDPOINT_COLUMNS = (
    "id, merchant, url, secret, event_types, description, enabled, created_ms, updated_ms"
)
DELIVERY_COLUMNS = (
    "id, endpoint_id, merchant, order_id, type, payload, created_ms, state, attempts,"
    " next_attempt_ms, last_status, last_error, updated_ms, delivered_ms"
)
_NEW_COLUMNS = DELIVERY_COLUMNS.removeprefix("id, ")
_NODE_MASK = (1 << ORDER_ID_NODE_BITS) - 1

Group = tuple[str, list[tuple[Any, ...]], int]
"""A statement with its parameter rows, as ``SqliteWriter.commit`` takes it (-1: unchecked)."""


def _subscribed(type_sql: str, dialect: str) -> str:
    """SQL true when endpoint ``e`` subscribes to the type ``type_sql`` evaluates to."""
    find = "instr({0}, {1})" if dialect == "sqlite" else "strpos({0}, {1})"
    where = find.format("',' || e.event_types || ','", f"',' || {type_sql} || ','")
    return f"(e.event_types = '{ALL_TYPES}' OR {where} > 0)"


def _fan_out_sql(p: list[str], dialect: str) -> str:
    """One staged event -> one row per subscribed endpoint of the order's merchants (or of
    the one merchant it names). ``p``: placeholders of (order_id, type, payload, at_ms,
    merchant)."""
    order_id, kind, payload, at, merchant = p
    return (
        f"INSERT INTO order_events ({_NEW_COLUMNS})"
        f" SELECT e.id, e.merchant, {order_id}, {kind}, {payload}, {at}, 'pending', 0, {at},"
        f" 0, '', {at}, 0 FROM webhook_endpoints e WHERE e.enabled = 1 AND e.merchant IN"
        f" (SELECT l.merchant FROM order_lines l WHERE l.order_id = {order_id})"
        f" AND ({merchant} = '' OR e.merchant = {merchant})"
        f" AND {_subscribed(kind, dialect)} ORDER BY e.id"
    )


def _created_sql(p: list[str], dialect: str) -> str:
    """order.created for every order with an id in [lo, hi] of node ``node`` (the orders of
    ``placed``: ids of one generator grow, and another node's orders in the range are not
    ours). ``p``: placeholders of (lo, hi, node, at_ms)."""
    lo, hi, node, at = p
    kind = f"'{EventType.ORDER_CREATED.value}'"
    return (
        f"INSERT INTO order_events ({_NEW_COLUMNS})"
        f" SELECT DISTINCT e.id, e.merchant, l.order_id, {kind}, NULL, {at}, 'pending', 0,"
        f" {at}, 0, '', {at}, 0 FROM order_lines l"
        " JOIN webhook_endpoints e ON e.merchant = l.merchant"
        f" WHERE l.order_id BETWEEN {lo} AND {hi}"
        f" AND ((l.order_id >> {ORDER_ID_SEQUENCE_BITS}) & {_NODE_MASK}) = {node}"
        f" AND e.enabled = 1 AND {_subscribed(kind, dialect)} ORDER BY l.order_id, e.id"
    )


_UPDATE_DELIVERY = (
    "UPDATE order_events SET state = {0}, attempts = {1}, next_attempt_ms = {2},"
    " last_status = {3}, last_error = {4}, updated_ms = {5}, delivered_ms = {6} WHERE id = {7}"
)
_CANCEL_PENDING = (
    "UPDATE order_events SET state = 'cancelled', updated_ms = {0}"
    " WHERE endpoint_id = {1} AND state = 'pending'"
)

SQLITE_FAN_OUT = _fan_out_sql(["?1", "?2", "?3", "?4", "?5"], "sqlite")
SQLITE_CREATED = _created_sql(["?1", "?2", "?3", "?4"], "sqlite")
SQLITE_UPSERT_ENDPOINT = upsert_sql("webhook_endpoints", ENDPOINT_COLUMNS, "id", "?")
SQLITE_UPDATE_DELIVERY = _UPDATE_DELIVERY.format(*["?"] * 8)
SQLITE_CANCEL_PENDING = _CANCEL_PENDING.format("?", "?")

POSTGRES_FAN_OUT = _fan_out_sql(
    ["$1::bigint", "$2::text", "$3::text", "$4::bigint", "$5::text"], "postgres"
)
POSTGRES_CREATED = _created_sql(
    ["$1::bigint", "$2::bigint", "$3::bigint", "$4::bigint"], "postgres"
)
POSTGRES_UPSERT_ENDPOINT = upsert_sql("webhook_endpoints", ENDPOINT_COLUMNS, "id", "$")
POSTGRES_UPDATE_DELIVERY = _UPDATE_DELIVERY.format(*(f"${n}" for n in range(1, 9)))
POSTGRES_CANCEL_PENDING = _CANCEL_PENDING.format("$1", "$2")

ENDPOINTS_SQL = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id"
PENDING_SQL = (
    f"SELECT {DELIVERY_COLUMNS} FROM order_events"
    " WHERE endpoint_id = {0} AND state = 'pending' ORDER BY id LIMIT {1}"
)
"""Format with the dialect's placeholders: (endpoint id, limit)."""
DELIVERIES_SQL = (
    f"SELECT {DELIVERY_COLUMNS} FROM order_events"
    " WHERE endpoint_id = {0} AND id < {1} ORDER BY id DESC LIMIT {2}"
)
"""Format with the dialect's placeholders: (endpoint id, before id, limit)."""


# --- rows ----------------------------------------------------------------------------------------


def endpoint_row(e: WebhookEndpoint) -> tuple[Any, ...]:
    return (
        e.id,
        e.merchant,
        e.url,
        e.secret,
        ",".join(e.event_types),
        e.description,
        int(e.enabled),
        e.created_ms,
        e.updated_ms,
    )


def endpoint_from_row(r: Row) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=int(r[0]),
        merchant=r[1],
        url=r[2],
        secret=r[3],
        event_types=tuple(str(r[4]).split(",")),
        description=r[5],
        enabled=bool(r[6]),
        created_ms=int(r[7]),
        updated_ms=int(r[8]),
    )


def delivery_from_row(r: Row) -> Delivery:
    payload = r[5]
    return Delivery(
        id=int(r[0]),
        endpoint_id=int(r[1]),
        merchant=r[2],
        order_id=int(r[3]),
        type=r[4],
        payload=None if payload is None else str(payload).encode(),
        created_ms=int(r[6]),
        state=DeliveryState(r[7]),
        attempts=int(r[8]),
        next_attempt_ms=int(r[9]),
        last_status=int(r[10]),
        last_error=r[11],
        updated_ms=int(r[12]),
        delivered_ms=int(r[13]),
    )


def _update_row(d: Delivery) -> tuple[Any, ...]:
    return (
        d.state.value,
        d.attempts,
        d.next_attempt_ms,
        d.last_status,
        d.last_error,
        d.updated_ms,
        d.delivered_ms,
        d.id,
    )


def _statements(batch: WriteBatch, at_ms: int) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """(statement key, parameter rows) of the batch's event writes, in order."""
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    if batch.webhook_endpoints:
        out.append(("upsert_endpoint", [endpoint_row(e) for e in batch.webhook_endpoints.values()]))
    if batch.deliveries:
        out.append(("update_delivery", [_update_row(d) for d in batch.deliveries.values()]))
    gone = [(at_ms, e.id) for e in batch.webhook_endpoints.values() if not e.enabled]
    if gone:
        out.append(("cancel_pending", gone))
    if batch.placed_events:
        span = batch.placed.id_range()
        if span is not None:
            node = (span[0] >> ORDER_ID_SEQUENCE_BITS) & _NODE_MASK
            out.append(("created", [(span[0], span[1], node, at_ms)]))
    if batch.order_events:
        rows = [
            (e.order_id, e.type.value, e.payload.decode(), e.at_ms, e.merchant)
            for e in batch.order_events
        ]
        out.append(("fan_out", rows))
    return out


_SQLITE = {
    "upsert_endpoint": SQLITE_UPSERT_ENDPOINT,
    "update_delivery": SQLITE_UPDATE_DELIVERY,
    "cancel_pending": SQLITE_CANCEL_PENDING,
    "created": SQLITE_CREATED,
    "fan_out": SQLITE_FAN_OUT,
}
_POSTGRES = {
    "upsert_endpoint": POSTGRES_UPSERT_ENDPOINT,
    "update_delivery": POSTGRES_UPDATE_DELIVERY,
    "cancel_pending": POSTGRES_CANCEL_PENDING,
    "created": POSTGRES_CREATED,
    "fan_out": POSTGRES_FAN_OUT,
}


def sqlite_groups(batch: WriteBatch, at_ms: int) -> list[Group]:
    """The batch's event writes as SQLite statement groups (after its orders and lines)."""
    return [(_SQLITE[key], rows, -1) for key, rows in _statements(batch, at_ms)]


def postgres_statements(batch: WriteBatch, at_ms: int) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The batch's event writes as PostgreSQL (statement, parameter rows) for executemany."""
    return [(_POSTGRES[key], rows) for key, rows in _statements(batch, at_ms)]
