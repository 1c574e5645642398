"""The shared part of the unit of work (``pyorder.kernel.unit``) for what the platform owes
and hears from providers and carriers: the outbox rows (``pyorder.kernel.outbox``: calls owed,
new or done, staged by payments, logistics and returns) and the provider and carrier webhook
events seen (staged by payments and logistics, read back by ``Store.webhook_event_seen``).

Not a capability's part: three capabilities stage into it, and none of them should depend on
another's storage for it. Tables ``outbox`` and ``webhook_events`` (schema version 3). An outbox
row is written whole (the last one staged wins); a webhook event is inserted once. The stores
write this part between the payments part and the refunds part, where these rows always were
(``pyorder.parts``). Times are ms since the Unix epoch (UTC).
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyorder.kernel.inbox import WebhookEvent
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.storage.codec import insert_new_sql, upsert_sql

OUTBOX_COLUMNS = "order_id, attempt, kind, done, created_ms, updated_ms"
WEBHOOK_EVENT_COLUMNS = "provider, event_id, type, received_ms"
PENDING_OUTBOX_SQL = (
    f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE done = 0 ORDER BY created_ms, order_id, attempt"
)


def outbox_row(o: OutboxItem) -> tuple[Any, ...]:
    return (o.order_id, o.attempt, o.kind.value, int(o.done), o.created_ms, o.updated_ms)


def outbox_from_row(r: Row) -> OutboxItem:
    return OutboxItem(
        order_id=int(r[0]),
        attempt=int(r[1]),
        kind=OutboxKind(r[2]),
        done=bool(r[3]),
        created_ms=int(r[4]),
        updated_ms=int(r[5]),
    )


def webhook_event_row(e: WebhookEvent) -> tuple[str, str, str, int]:
    return (e.provider, e.event_id, e.type, e.received_ms)


_UPSERT_OUTBOX = Statement(
    upsert_sql("outbox", OUTBOX_COLUMNS, "order_id, attempt, kind", "?"),
    upsert_sql("outbox", OUTBOX_COLUMNS, "order_id, attempt, kind", "$"),
)
_INSERT_WEBHOOK_EVENT = Statement(
    insert_new_sql("webhook_events", WEBHOOK_EVENT_COLUMNS, "?"),
    insert_new_sql("webhook_events", WEBHOOK_EVENT_COLUMNS, "$"),
)


@dataclass(slots=True)
class StagedOutbox:
    """The outbox and webhook-event rows of one batch."""

    items: dict[tuple[int, int, str], OutboxItem] = field(default_factory=dict)
    """Calls owed to providers and carriers, new or done, by ``OutboxItem.key``."""
    webhook_events: list[WebhookEvent] = field(default_factory=list)
    """Provider and carrier webhook events received (each id recorded once)."""

    def __len__(self) -> int:
        return len(self.items) + len(self.webhook_events)

    def writes(self) -> Iterator[Write]:
        """Outbox rows, then webhook events: the order they always had."""
        if self.items:
            yield _UPSERT_OUTBOX, list(map(outbox_row, self.items.values()))
        if self.webhook_events:
            yield _INSERT_WEBHOOK_EVENT, list(map(webhook_event_row, self.webhook_events))


def _pending(rows: Sequence[Sequence[Row]]) -> list[OutboxItem]:
    (items,) = rows
    return [outbox_from_row(r) for r in items]


def _of_orders(items: list[OutboxItem], keep: Callable[[int], bool]) -> list[OutboxItem]:
    return [i for i in items if keep(i.order_id)]


OUTBOX = PartKind("outbox", StagedOutbox, (PENDING_OUTBOX_SQL,), _pending, _of_orders)
"""The outbox part (snapshot: the calls owed and not done yet, oldest first): registered in
``pyorder.parts``, between the payments and refunds parts."""
