"""Order events in the store (schema version 7), on both backends: a staged event fans out in
the batch's transaction to one row per enabled endpoint, subscribed to its type, of a merchant
holding a line of the order, and to no other; the Rust intake's orders get their order.created
the same way; delivery outcomes update the rows, and deleting an endpoint cancels what it had
pending."""

from dataclasses import replace

import pytest

from pyorder._core import ORDER_ID_NODE_BITS, ORDER_ID_SEQUENCE_BITS
from pyorder.events.model import Delivery, DeliveryState, EventType, OrderEvent, WebhookEndpoint
from pyorder.events.storage import EVENTS
from pyorder.model import WriteBatch
from pyorder.risk.records import Decision
from pyorder.storage.base import Store
from pyorder.storage.postgres import COPY_THRESHOLD

from .backends import Backend
from .records import catalog, line, order, placed, write_decisions

ALPHA, BETA = "m-alpha", "m-beta"
"""The merchants of the SKUs of ``records.catalog``: even SKUs are alpha's, odd ones beta's."""


def endpoint(eid: int, merchant: str, *types: str, enabled: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=eid,
        merchant=merchant,
        url=f"https://{merchant}.example/hooks/{eid}",
        secret=f"whsec_{eid}",
        event_types=types or ("*",),
        description="",
        enabled=enabled,
        created_ms=1_000 + eid,
        updated_ms=1_000 + eid,
    )


ENDPOINTS = {
    1: endpoint(1, ALPHA),
    2: endpoint(2, ALPHA, EventType.ORDER_PAID),
    3: endpoint(3, BETA, EventType.ORDER_CREATED, EventType.ORDER_PAID),
    4: endpoint(4, "m-gamma"),  # a merchant with no line in any order
    5: endpoint(5, ALPHA, enabled=False),  # deleted
}


def staged(
    batch: WriteBatch | None = None,
    *,
    endpoints: dict[int, WebhookEndpoint] | None = None,
    events: list[OrderEvent] | None = None,
    deliveries: dict[int, Delivery] | None = None,
    created: bool = False,
) -> WriteBatch:
    """``batch`` (a new one if None) with these rows staged in its events part; ``created``:
    order.created for every order of its ``placed``."""
    batch = WriteBatch() if batch is None else batch
    part = batch.part(EVENTS)
    part.endpoints.update(endpoints or {})
    part.events.extend(events or [])
    part.deliveries.update(deliveries or {})
    if created:
        part.created = batch.placed
    return batch


async def owed(s: Store) -> dict[int, list[tuple[str, int]]]:
    """Endpoint id -> its pending events as (type, order id), in event order."""
    return {
        eid: [(d.type, d.order_id) for d in await s.pending_deliveries(eid, 100)]
        for eid in ENDPOINTS
    }


def test_an_event_fans_out_to_the_subscribed_endpoints_of_the_orders_merchants(
    store: Backend,
) -> None:
    async def body(s: Store) -> None:
        await s.commit(staged(catalog(), endpoints=dict(ENDPOINTS)))
        assert await s.webhook_endpoints() == list(ENDPOINTS.values())
        # Alpha's order, beta's order, and one with two lines of alpha's and one of beta's;
        # then an order taken with no order.created asked for (nobody subscribed then).
        orders = [order(1, line(0)), order(2, line(1)), order(3, line(0), line(2), line(1))]
        await s.commit(staged(WriteBatch(placed=placed(*orders)), created=True))
        await s.commit(WriteBatch(placed=placed(order(4, line(0)))))
        created, paid = EventType.ORDER_CREATED.value, EventType.ORDER_PAID.value
        assert await owed(s) == {
            1: [(created, 1), (created, 3)],
            2: [],
            3: [(created, 2), (created, 3)],
            4: [],
            5: [],
        }
        data = b'{"object":{"id":"1","status":"paid"}}'
        await s.commit(
            staged(
                events=[
                    OrderEvent(1, EventType.ORDER_PAID, data, 5_000),
                    OrderEvent(2, EventType.ORDER_CANCELLED, b"{}", 5_001),
                    OrderEvent(3, EventType.ORDER_PAID, b"{}", 5_002),
                ]
            )
        )
        pending = await owed(s)
        assert pending[1][2:] == [(paid, 1), (paid, 3)]  # not order 2: beta's
        assert pending[2] == [(paid, 1), (paid, 3)]
        assert pending[3][2:] == [(paid, 3)]
        assert pending[4] == pending[5] == []
        [first_paid] = [d for d in await s.pending_deliveries(2, 100) if d.order_id == 1]
        assert (first_paid.payload, first_paid.created_ms) == (data, 5_000)
        assert first_paid.state is DeliveryState.PENDING
        assert first_paid.attempts == first_paid.last_status == 0
        assert {d.payload for d in await s.pending_deliveries(1, 2)} == {None}
        ids = [d.id for eid in ENDPOINTS for d in await s.pending_deliveries(eid, 100)]
        assert len(set(ids)) == len(ids) == 9, "one event id per (event, endpoint)"

    store.run(body)


def test_an_event_naming_a_merchant_fans_out_to_its_endpoints_only(store: Backend) -> None:
    """A refund of some merchants' lines of an order is staged once per merchant it touches,
    each naming its merchant: only that merchant's endpoints get it (and only if it holds a
    line of the order); an event naming none goes to every merchant of the order."""

    async def body(s: Store) -> None:
        await s.commit(staged(catalog(), endpoints=dict(ENDPOINTS)))
        await s.commit(WriteBatch(placed=placed(order(3, line(0), line(1)))))
        refunded = EventType.ORDER_REFUNDED
        await s.commit(
            staged(
                events=[
                    OrderEvent(3, refunded, b'{"object":{"n":1}}', 6_000, BETA),
                    OrderEvent(3, refunded, b'{"object":{"n":2}}', 6_001, "m-gamma"),
                    OrderEvent(3, refunded, b'{"object":{"n":3}}', 6_002),
                ]
            )
        )
        got = {eid: [d.payload for d in await s.pending_deliveries(eid, 100)] for eid in ENDPOINTS}
        assert got[1] == [b'{"object":{"n":3}}']  # alpha: only the one naming no merchant
        assert got[2] == []  # subscribed to order.paid only
        assert got[3] == []  # beta subscribes to created and paid only
        assert got[4] == []
        assert got[5] == []
        beta_all = endpoint(6, BETA)
        await s.commit(staged(endpoints={6: beta_all}))
        await s.commit(staged(events=[OrderEvent(3, refunded, b'{"object":{"n":4}}', 6_003, BETA)]))
        assert [d.payload for d in await s.pending_deliveries(6, 100)] == [b'{"object":{"n":4}}']
        assert [d.payload for d in await s.pending_deliveries(1, 100)] == [b'{"object":{"n":3}}']

    store.run(body)


def test_placed_orders_of_another_node_get_no_created_event(store: Backend) -> None:
    """order.created of ``placed`` is selected by the batch's id range and this node's bits:
    an order another node took in the same milliseconds, inside the range, is not this
    batch's."""

    def order_id(ms: int, node: int, sequence: int) -> int:
        return (
            (ms << (ORDER_ID_NODE_BITS + ORDER_ID_SEQUENCE_BITS))
            | (node << ORDER_ID_SEQUENCE_BITS)
            | sequence
        )

    ours = [order_id(1, 0, 5), order_id(2, 0, 0)]
    theirs = order_id(1, 1, 0)

    async def body(s: Store) -> None:
        await s.commit(staged(catalog(), endpoints={1: ENDPOINTS[1]}))
        await s.commit(WriteBatch(placed=placed(order(theirs, line(0)))))
        batch = staged(WriteBatch(placed=placed(*(order(i, line(0)) for i in ours))), created=True)
        await s.commit(batch)
        assert [d.order_id for d in await s.pending_deliveries(1, 100)] == ours

    store.run(body)


def test_a_large_placed_batch_gets_every_created_event(store: Backend) -> None:
    """Above PostgreSQL's COPY threshold (binary COPY of the intake's rows) as below it."""
    n = 3 * COPY_THRESHOLD

    async def body(s: Store) -> None:
        await s.commit(staged(catalog(), endpoints={3: ENDPOINTS[3]}))
        orders = [order(i, line(i % 4)) for i in range(1, n + 1)]
        await s.commit(staged(WriteBatch(placed=placed(*orders)), created=True))
        found = [d.order_id for d in await s.pending_deliveries(3, 1000)]
        assert found == [i for i in range(1, n + 1) if i % 2]  # beta's: odd SKUs

    store.run(body)


@pytest.mark.parametrize("retry_first", [False, True])
def test_outcomes_update_and_deleting_cancels_what_is_pending(
    store: Backend, retry_first: bool
) -> None:
    """Outcomes are written as staged; disabling an endpoint cancels its pending events in the
    same transaction, after the outcomes of that batch (a retry staged with the deletion does
    not revive one), and leaves delivered ones as they are."""

    async def body(s: Store) -> None:
        await s.commit(staged(catalog(), endpoints={1: ENDPOINTS[1]}))
        orders = [order(i, line(0)) for i in (1, 2, 3)]
        await s.commit(staged(WriteBatch(placed=placed(*orders)), created=True))
        first, second, third = await s.pending_deliveries(1, 100)
        done = replace(
            first,
            state=DeliveryState.DELIVERED,
            attempts=2,
            last_status=200,
            updated_ms=7_000,
            delivered_ms=7_000,
        )
        retry = replace(second, attempts=1, next_attempt_ms=9_000, last_status=500, last_error="x")
        await s.commit(staged(deliveries={done.id: done}))
        assert await s.pending_deliveries(1, 100) == [second, third]
        gone = replace(ENDPOINTS[1], enabled=False, updated_ms=8_000)
        batch = staged(endpoints={1: gone})
        if retry_first:
            batch.part(EVENTS).deliveries[retry.id] = retry
        await s.commit(batch)
        assert await s.pending_deliveries(1, 100) == []
        listed = await s.deliveries(1, None, 10)
        assert [d.id for d in listed] == [third.id, second.id, first.id]
        assert [d.state for d in listed] == [
            DeliveryState.CANCELLED,
            DeliveryState.CANCELLED,
            DeliveryState.DELIVERED,
        ]
        assert listed[2] == done
        assert listed[1].attempts == (1 if retry_first else 0)
        assert await s.deliveries(1, second.id, 10) == [done]
        assert await s.deliveries(1, None, 1) == listed[:1]
        assert await s.webhook_endpoints() == [gone]

    store.run(body)


def test_orders_held_for_review_get_review_required(store: Backend) -> None:
    """order.review_required of ``placed`` is selected by the batch's id range and this node's
    bits from the decisions written with the orders: only those held for review, to the
    subscribed endpoints of their merchants."""

    async def catalogue(s: Store) -> None:
        await s.commit(staged(catalog(), endpoints=dict(ENDPOINTS)))

    store.run(catalogue)
    held = [(1, "review"), (2, "allow"), (3, "review"), (4, "block")]
    write_decisions(
        store,
        [
            Decision(
                oid, "buyer-1", f"merchant:{ALPHA}", 1, outcome, False, 70, None, "score", (), ()
            )
            for oid, outcome in held
        ],
    )

    async def body(s: Store) -> dict[int, list[tuple[str, int]]]:
        orders = [order(1, line(0)), order(2, line(0)), order(3, line(0), line(1))]
        batch = WriteBatch(placed=placed(*orders))
        batch.part(EVENTS).review_required = batch.placed
        await s.commit(batch)
        return await owed(s)

    required = EventType.ORDER_REVIEW_REQUIRED.value
    assert store.run(body) == {
        1: [(required, 1), (required, 3)],  # alpha, every type
        2: [],  # alpha, order.paid only
        3: [],  # beta holds a line of 3, but takes order.created and .paid only
        4: [],
        5: [],
    }
