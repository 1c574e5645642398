"""The events capability's share of the unit of work (``pyorder.kernel.unit``): its staged rows
(endpoints, delivery outcomes, order events), its SQL for both stores, and the reads of
``order_events`` and ``webhook_endpoints`` (tables of schema version 7).

Events are fanned out in SQL, inside the batch's transaction: a staged ``OrderEvent`` becomes
one ``order_events`` row per enabled endpoint, subscribed to its type, of a merchant holding a
line of the order (``INSERT ... SELECT`` over ``webhook_endpoints`` and ``order_lines``), or of
the one merchant it names (a refund of some merchants' lines). The
orders the Rust intake took (``WriteBatch.placed``) get their ``order.created`` rows the same
way from the order lines just inserted, selected by the batch's id range and this node's bits
of the id, so no Python object is made per order; their ``payload`` is NULL and rendered at
delivery from the order's row. Nothing here runs for a batch with no events: with no endpoint
registered, the write path is unchanged.

Statement order within the part: endpoints first (a fan-out sees the endpoints of its own
batch), then delivery outcomes, then the cancelling of a deleted endpoint's pending events
(after the outcomes, so a retry staged just before cannot revive one), then the fan-outs. The
stores write this part last of all the parts (``pyorder.parts``), where the events always were:
after every other row of the batch (the fan-outs read the order lines and the endpoints just
written), before the commit token. The part loads nothing at start: endpoints and deliveries
are read on demand (``ENDPOINTS_SQL``, ``PENDING_SQL``, ``DELIVERIES_SQL``). Times are ms since
the Unix epoch (UTC).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyorder._core import ORDER_ID_NODE_BITS, ORDER_ID_SEQUENCE_BITS, OrderRows
from pyorder.events.model import (
    ALL_TYPES,
    Delivery,
    DeliveryState,
    EventType,
    OrderEnded,
    OrderEvent,
    WebhookEndpoint,
)
from pyorder.kernel.clock import now_ms
from pyorder.kernel.unit import PartKind, Row, Statement, Write
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


def _review_required_sql(p: list[str], dialect: str) -> str:
    """order.review_required for every order held for review with an id in [lo, hi] of node
    ``node`` (the orders of ``placed``, as ``_created_sql``): their decisions were written
    with them. ``p``: placeholders of (lo, hi, node, at_ms)."""
    lo, hi, node, at = p
    kind = f"'{EventType.ORDER_REVIEW_REQUIRED.value}'"
    return (
        f"INSERT INTO order_events ({_NEW_COLUMNS})"
        f" SELECT DISTINCT e.id, e.merchant, l.order_id, {kind}, NULL, {at}, 'pending', 0,"
        f" {at}, 0, '', {at}, 0 FROM risk_decisions d"
        " JOIN order_lines l ON l.order_id = d.id"
        " JOIN webhook_endpoints e ON e.merchant = l.merchant"
        f" WHERE d.id BETWEEN {lo} AND {hi} AND d.outcome = 'review'"
        f" AND ((d.id >> {ORDER_ID_SEQUENCE_BITS}) & {_NODE_MASK}) = {node}"
        f" AND e.enabled = 1 AND {_subscribed(kind, dialect)} ORDER BY l.order_id, e.id"
    )


def _expired_sql() -> str:
    """order.expired for the orders of ``$1`` (ids) a take-over just expired in SQL (a dead
    cluster node's, ``pyorder.storage.stock_leases``), at ``$2`` (ms): one row per subscribed
    endpoint of their merchants, ``payload`` NULL (rendered at delivery from the order's row,
    which holds its expiry). PostgreSQL only: SQLite has one node."""
    kind = f"'{EventType.ORDER_EXPIRED.value}'"
    return (
        f"INSERT INTO order_events ({_NEW_COLUMNS})"
        f" SELECT DISTINCT e.id, e.merchant, l.order_id, {kind}, NULL::text, $2::bigint,"
        " 'pending', 0, $2::bigint, 0, '', $2::bigint, 0 FROM order_lines l"
        " JOIN webhook_endpoints e ON e.merchant = l.merchant"
        " WHERE l.order_id = ANY($1::bigint[])"
        f" AND e.enabled = 1 AND {_subscribed(kind, 'postgres')} ORDER BY l.order_id, e.id"
    )


EXPIRED_EVENTS_SQL = _expired_sql()

_UPDATE_DELIVERY_SQL = (
    "UPDATE order_events SET state = {0}, attempts = {1}, next_attempt_ms = {2},"
    " last_status = {3}, last_error = {4}, updated_ms = {5}, delivered_ms = {6} WHERE id = {7}"
)
_CANCEL_PENDING_SQL = (
    "UPDATE order_events SET state = 'cancelled', updated_ms = {0}"
    " WHERE endpoint_id = {1} AND state = 'pending'"
)

_FAN_OUT = Statement(
    _fan_out_sql(["?1", "?2", "?3", "?4", "?5"], "sqlite"),
    _fan_out_sql(["$1::bigint", "$2::text", "$3::text", "$4::bigint", "$5::text"], "postgres"),
)
_CREATED = Statement(
    _created_sql(["?1", "?2", "?3", "?4"], "sqlite"),
    _created_sql(["$1::bigint", "$2::bigint", "$3::bigint", "$4::bigint"], "postgres"),
)
_REVIEW_REQUIRED = Statement(
    _review_required_sql(["?1", "?2", "?3", "?4"], "sqlite"),
    _review_required_sql(["$1::bigint", "$2::bigint", "$3::bigint", "$4::bigint"], "postgres"),
)
_UPSERT_ENDPOINT = Statement(
    upsert_sql("webhook_endpoints", ENDPOINT_COLUMNS, "id", "?"),
    upsert_sql("webhook_endpoints", ENDPOINT_COLUMNS, "id", "$"),
)
_UPDATE_DELIVERY = Statement(
    _UPDATE_DELIVERY_SQL.format(*["?"] * 8),
    _UPDATE_DELIVERY_SQL.format(*(f"${n}" for n in range(1, 9))),
)
_CANCEL_PENDING = Statement(
    _CANCEL_PENDING_SQL.format("?", "?"), _CANCEL_PENDING_SQL.format("$1", "$2")
)

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


@dataclass(slots=True)
class StagedEvents:
    """The events rows of one batch."""

    endpoints: dict[int, WebhookEndpoint] = field(default_factory=dict)
    """Endpoint id -> its row as it is now (a deleted one is disabled, and its events not
    delivered yet are cancelled in the same transaction)."""
    events: list[OrderEvent] = field(default_factory=list)
    """Events of this batch's state changes: each is fanned out at commit, in SQL, to one
    ``order_events`` row per enabled endpoint subscribed to it of a merchant of the order."""
    ended: list[OrderEnded] = field(default_factory=list)
    """Events of orders that ended here with no full ``Order`` at hand: made into ``events``
    as the batch is handed to the store (``Events.resolve_ended``)."""
    created: OrderRows | None = None
    """The batch's own ``WriteBatch.placed`` (the same object, which keeps growing while the
    batch is open) when ``order.created`` is to be written for every order in it, fanned out
    the same way, in SQL over the rows just inserted (no Python object per order)."""
    review_required: OrderRows | None = None
    """The same, when ``order.review_required`` is to be written for the orders in it that
    risk control held for review (over their decisions just inserted)."""
    deliveries: dict[int, Delivery] = field(default_factory=dict)
    """Event id -> its delivery state as it is now (attempts, next attempt, outcome)."""

    def __len__(self) -> int:
        # ``created`` adds no row of its own: its orders are counted by ``WriteBatch.placed``.
        return len(self.endpoints) + len(self.events) + len(self.ended) + len(self.deliveries)

    def writes(self) -> Iterator[Write]:
        """Endpoints, delivery outcomes, cancellations, then the fan-outs (module docstring);
        the new rows are stamped with the time of this call (the commit's)."""
        at_ms = now_ms()
        if self.endpoints:
            yield _UPSERT_ENDPOINT, [endpoint_row(e) for e in self.endpoints.values()]
        if self.deliveries:
            yield _UPDATE_DELIVERY, [_update_row(d) for d in self.deliveries.values()]
        gone = [(at_ms, e.id) for e in self.endpoints.values() if not e.enabled]
        if gone:
            yield _CANCEL_PENDING, gone
        for placed, statement in (
            (self.created, _CREATED),
            (self.review_required, _REVIEW_REQUIRED),
        ):
            span = None if placed is None else placed.id_range()
            if span is not None:
                node = (span[0] >> ORDER_ID_SEQUENCE_BITS) & _NODE_MASK
                yield statement, [(span[0], span[1], node, at_ms)]
        if self.events:
            rows = [
                (e.order_id, e.type.value, e.payload.decode(), e.at_ms, e.merchant)
                for e in self.events
            ]
            yield _FAN_OUT, rows


def _nothing(rows: Sequence[Sequence[Row]]) -> None:
    """The events part loads nothing at start (its reads are made on demand)."""


EVENTS = PartKind("events", StagedEvents, (), _nothing)
"""The events part: registered in ``pyorder.parts``, written after every other part."""
