"""Purchase limits across cluster nodes (``pyorder.storage.limit_claims``,
``pyorder.cluster.limits``), in process: two cluster platforms on one fresh PostgreSQL
database.

The store's claim (concurrent claims of two nodes never exceed the limit; dead claims stop
counting; committed orders count, cancelled and expired ones stop), the commit that deletes a
claim with its order and fails when the claim was taken over, and the platforms placing through
it (``Orders.place_checked``)."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import asyncpg
import pytest

from pyorder import Address, OrderInput, Platform, Principal, Role
from pyorder.auth import buyer_number
from pyorder.intake import IntakeUnavailableError
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import PurchaseLimitExceeded
from pyorder.model import WriteBatch
from pyorder.storage.base import StorageError
from pyorder.storage.key_claims import CLAIM_GRACE_MS
from pyorder.storage.limit_claims import CLAIM_TTL_MS, LIMIT_CLAIMS
from tests.support.cluster import solo_catalogue, two_nodes
from tests.support.postgres import fresh_postgres_database

HOME = Address(name="Alice", line1="1 Road", city="Shanghai", region="north")
ALICE = Principal(Role.BUYER, "alice")
LIMIT = 3


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_limits") as url:
        yield url


async def _stocked(node: Platform, sku: int) -> None:
    """Wait until ``node`` has leased units of ``sku`` (its keeper leases soon after start)."""
    assert node.stock_keeper is not None
    for _ in range(200):
        if node.engine.inventory.stock(sku).available > 0:
            return
        await node.stock_keeper.refill_now()
        await asyncio.sleep(0.05)
    raise AssertionError("the node never leased stock")


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _eventually(claim: Callable[[], Awaitable[bool]], within_s: float = 3.0) -> None:
    """Claim until it is taken (a refused claim writes nothing), for at most ``within_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await claim():
        assert loop.time() < deadline, "the claim was never taken"
        await asyncio.sleep(0.05)


def _fence(node: Platform) -> tuple[int, int]:
    return node.claim.node, node.claim.epoch


IN_FLIGHT = list(range(10_000))
"""Order ids the tests claim under: all in flight (a node's own claims of orders not in flight
are dead to it)."""


async def _claim(
    node: Platform, sku: int, order_id: int, units: int, in_flight: list[int] = IN_FLIGHT
) -> bool:
    """One store-level claim of ``units`` for ALICE under ``order_id``; whether it was taken."""
    refused = await node.store.claim_limits(
        ALICE.subject, [(order_id, {sku: units})], *_fence(node), in_flight
    )
    return order_id not in refused


def test_concurrent_claims_of_two_nodes_never_exceed_the_limit(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100, limit_per_buyer=LIMIT)
        async with two_nodes(dsn, tmp_path) as (a, b):
            # 24 claims of one unit at once, alternating between the nodes (ids distinct, as
            # order ids are): exactly the limit is claimed, whatever the interleaving.
            taken = await asyncio.gather(
                *(_claim((a, b)[i % 2], sku, 1_000 + i, 1) for i in range(24))
            )
            assert sum(taken) == LIMIT
            rows = await _fetch(dsn, "SELECT node, units FROM limit_claims WHERE sku = $1", sku)
            assert sum(int(r["units"]) for r in rows) == LIMIT
            # An order of two SKU lines is refused whole, naming the SKU over its limit; one
            # that fits the rest of another buyer's limit is not affected by ALICE's claims.
            refused = await b.store.claim_limits(
                ALICE.subject, [(2_000, {sku: 1})], *_fence(b), IN_FLIGHT
            )
            assert refused == {2_000: sku}
            other = await b.store.claim_limits(
                "bob", [(2_001, {sku: LIMIT})], *_fence(b), IN_FLIGHT
            )
            assert other == {}
            # Within one request, orders are taken one by one in order: the first that does
            # not fit is refused, a later one that does fit is taken.
            await a.store.release_limits([r for r in range(1_000, 1_024)], *_fence(a))
            await b.store.release_limits([r for r in range(1_000, 1_024)], *_fence(b))
            split = await a.store.claim_limits(
                ALICE.subject,
                [(3_000, {sku: 2}), (3_001, {sku: 2}), (3_002, {sku: 1})],
                *_fence(a),
                [3_000, 3_001, 3_002],
            )
            assert split == {3_001: sku}

    asyncio.run(body())


def test_dead_claims_stop_counting(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100, limit_per_buyer=LIMIT)
        async with two_nodes(dsn, tmp_path) as (a, b):
            node, epoch = _fence(a)
            insert = (
                "INSERT INTO limit_claims (claim, sku, buyer, units, node, epoch, claimed_ms)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )
            conn = await asyncpg.connect(dsn)
            try:
                # A live node's claim counts: the whole limit is held.
                await conn.execute(insert, 1, sku, ALICE.subject, LIMIT, node, epoch, now_ms())
                assert not await _claim(b, sku, 10, 1)
                # Its epoch moved on (the number was claimed again): it stops counting and is
                # deleted by the next claim of the pair.
                await conn.execute("UPDATE limit_claims SET epoch = $1 WHERE claim = 1", epoch - 1)
                assert await _claim(b, sku, 11, 1)
                assert await _fetch(dsn, "SELECT 1 FROM limit_claims WHERE claim = 1") == []
                # A node with no lease lock, silent past the grace: dead. One silent for less
                # than the grace still counts.
                await conn.execute(
                    "INSERT INTO node_leases (node, epoch, holder, mode, acquired_ms, seen_ms)"
                    " VALUES (200, 1, 'gone:1', 'cluster', 0, $1)",
                    now_ms(),
                )
                await conn.execute(insert, 2, sku, ALICE.subject, 2, 200, 1, now_ms())
                assert not await _claim(b, sku, 12, 1)
                await conn.execute(
                    "UPDATE node_leases SET seen_ms = $1 WHERE node = 200",
                    now_ms() - CLAIM_GRACE_MS - 1,
                )
                # The leader may adopt the silent number meanwhile: while it holds the number's
                # lock before it raises the epoch, the claim is alive for a moment.
                await _eventually(lambda: _claim(b, sku, 13, 1))
                # Past the TTL any claim is dead, even a live node's.
                await conn.execute("DELETE FROM limit_claims")
                old = now_ms() - CLAIM_TTL_MS - 1
                await conn.execute(insert, 3, sku, ALICE.subject, LIMIT, node, epoch, old)
                assert await _claim(b, sku, 14, LIMIT)
                # The claiming node's own claim of an order it no longer has in flight (a
                # release that failed) is dead to it; one in flight is alive.
                await conn.execute("DELETE FROM limit_claims")
                await conn.execute(insert, 4, sku, ALICE.subject, LIMIT, node, epoch, now_ms())
                refused = await a.store.claim_limits(
                    ALICE.subject, [(15, {sku: 1})], node, epoch, [4, 15]
                )
                assert refused == {15: sku}
                # Its own claim of an order newer than the request's is of a request that began
                # since (its claim committed while this one waited for the lock): alive. Claim
                # 4, older and not in flight, is dead, and deleted.
                await conn.execute(insert, 50, sku, ALICE.subject, LIMIT, node, epoch, now_ms())
                assert not await _claim(a, sku, 17, 1, in_flight=[17])
                left = await _fetch(dsn, "SELECT claim FROM limit_claims ORDER BY claim")
                assert [int(r["claim"]) for r in left] == [50]
                await conn.execute("DELETE FROM limit_claims")
                await conn.execute(insert, 4, sku, ALICE.subject, LIMIT, node, epoch, now_ms())
                assert await _claim(a, sku, 16, 1, in_flight=[16])
                assert await _fetch(dsn, "SELECT 1 FROM limit_claims WHERE claim = 4") == []
            finally:
                await conn.close()

    asyncio.run(body())


def test_a_commit_deletes_its_claims_and_fails_when_they_were_taken_over(
    dsn: str, tmp_path: Path
) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100, limit_per_buyer=LIMIT)
        async with two_nodes(dsn, tmp_path) as (a, _):
            assert await _claim(a, sku, 21, 1)
            batch = WriteBatch()
            batch.part(LIMIT_CLAIMS).add(21, 1)
            await a.store.commit(batch)
            assert await _fetch(dsn, "SELECT 1 FROM limit_claims") == []
            # The claim is gone (taken over as dead): the commit of its order writes nothing.
            late = WriteBatch()
            late.part(LIMIT_CLAIMS).add(21, 1)
            with pytest.raises(StorageError, match="claim of order 21 was taken over"):
                await a.store.commit(late)

    asyncio.run(body())


def test_orders_count_on_every_node_until_cancelled_or_expired(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100, limit_per_buyer=LIMIT)
        async with two_nodes(dsn, tmp_path, payment_timeout_ms=1_500) as (a, b):
            for node in (a, b):
                await _stocked(node, sku)
            first = await a.orders.place_checked(ALICE, OrderInput([(sku, 2)], HOME))
            await a.intake.durable()
            # Committed: the order counts, its claim is gone.
            assert await _fetch(dsn, "SELECT 1 FROM limit_claims") == []
            with pytest.raises(PurchaseLimitExceeded) as refused:
                await b.orders.place_checked(ALICE, OrderInput([(sku, 2)], HOME))
            assert refused.value.details == {"sku": sku}
            # The refused order left nothing behind: b's core holds none of ALICE's units.
            assert b.engine.inventory.bought_by(sku, buyer_number(ALICE.subject)) == 0
            await b.intake.durable()
            second = await b.orders.place_checked(ALICE, OrderInput([(sku, 1)], HOME))
            await b.intake.durable()
            with pytest.raises(PurchaseLimitExceeded):
                await a.orders.place_checked(ALICE, OrderInput([(sku, 1)], HOME))
            # A node refuses the synchronous path for limited SKUs (it cannot claim).
            with pytest.raises(RuntimeError, match="place_checked"):
                a.orders.place(ALICE, OrderInput([(sku, 1)], HOME))

            # Cancelled on its node: its units stop counting everywhere.
            await a.orders.cancel(ALICE, first.id)
            await a.intake.durable()
            third = await b.orders.place_checked(ALICE, OrderInput([(sku, 2)], HOME))
            await b.intake.durable()
            # Expired (both of b's orders, 1.5 s after they were placed): free again.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while True:
                try:
                    await a.orders.place_checked(ALICE, OrderInput([(sku, LIMIT)], HOME))
                    break
                except PurchaseLimitExceeded:
                    assert loop.time() < deadline, "the expired orders kept counting"
                    await asyncio.sleep(0.2)
            await a.intake.durable()
            statuses = {
                int(r["id"]): r["status"]
                for r in await _fetch(dsn, "SELECT id, status FROM orders")
            }
            assert statuses[first.id] == "cancelled"
            assert statuses[second.id] == statuses[third.id] == "expired"
            assert sorted(statuses.values()).count("pending_payment") == 1

    asyncio.run(body())


def test_paid_orders_count_and_void_sales_do_not(dsn: str, tmp_path: Path) -> None:
    """The statuses the claim counts, as the core does: paid units count (a return does not
    change that), a paid order cancelled (a void sale) does not."""

    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100, limit_per_buyer=LIMIT)
        async with two_nodes(dsn, tmp_path) as (a, b):
            await _stocked(a, sku)
            order = await a.orders.place_checked(ALICE, OrderInput([(sku, LIMIT)], HOME))
            await a.intake.durable()
            conn = await asyncpg.connect(dsn)
            try:
                # Only the status matters to the count: set it as a payment, then a cancel of
                # the paid order, would.
                await conn.execute("UPDATE orders SET status = 'paid' WHERE id = $1", order.id)
                assert not await _claim(b, sku, 30, 1)
                await conn.execute("UPDATE orders SET status = 'cancelled' WHERE id = $1", order.id)
                assert await _claim(b, sku, 31, LIMIT)
            finally:
                await conn.close()

    asyncio.run(body())


def test_a_rebuild_during_the_claim_or_a_claim_taken_over_places_nothing(
    dsn: str, tmp_path: Path
) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100, limit_per_buyer=LIMIT)
        async with two_nodes(dsn, tmp_path) as (a, _):
            await _stocked(a, sku)
            claim = a.store.claim_limits
            buyer = buyer_number(ALICE.subject)

            async def rebuilt_meanwhile(*args: Any) -> dict[int, int]:
                refused = await claim(*args)
                await a.rebuild()  # a failed commit's recovery, while the claim was in flight
                return refused

            with (
                mock.patch.object(a.store, "claim_limits", rebuilt_meanwhile),
                pytest.raises(IntakeUnavailableError),
            ):
                await a.orders.place_checked(ALICE, OrderInput([(sku, 1)], HOME))
            assert await _fetch(dsn, "SELECT 1 FROM limit_claims") == []
            assert a.engine.inventory.bought_by(sku, buyer) == 0
            assert a.limit_claims is not None
            assert not a.limit_claims.in_flight

            async def taken_over(*args: Any) -> dict[int, int]:
                refused = await claim(*args)
                conn = await asyncpg.connect(dsn)  # another node found it dead and deleted it
                try:
                    await conn.execute("DELETE FROM limit_claims")
                finally:
                    await conn.close()
                return refused

            with mock.patch.object(a.store, "claim_limits", taken_over):
                order = await a.orders.place_checked(ALICE, OrderInput([(sku, 1)], HOME))
            with pytest.raises(IntakeUnavailableError):
                await a.intake.durable()  # the commit met the fence: nothing written
            assert await _fetch(dsn, "SELECT 1 FROM orders WHERE id = $1", order.id) == []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not a.ready:  # the intake rebuilds the core from the store
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
            await _stocked(a, sku)
            again = await a.orders.place_checked(ALICE, OrderInput([(sku, LIMIT)], HOME))
            await a.intake.durable()
            assert await _fetch(dsn, "SELECT 1 FROM orders WHERE id = $1", again.id) != []
            assert not a.limit_claims.in_flight

    asyncio.run(body())
