"""Node leases on a real PostgreSQL (``pyorder.storage.node_lease``): one solo node per
database, distinct numbers in cluster mode, a dead holder's number free at once, a stale epoch
fenced off, a claim waiting for the old epoch's commits in flight, and the heartbeat claiming
again after its session is cut."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import asyncpg
import numpy as np
import pytest

from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.ids import OrderIdGenerator
from pyorder.model import WriteBatch
from pyorder.storage.node_lease import (
    FENCE_SQL,
    FencedError,
    LeaseConfig,
    NodeLease,
    NodeRefusedError,
)
from pyorder.storage.postgres import PostgresStore
from tests.storage.records import line, order, placed
from tests.support.postgres import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_lease") as url:
        asyncio.run(_migrate(url))
        yield url


async def _migrate(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.close()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


async def _lease(dsn: str, **config: object) -> NodeLease:
    lease = NodeLease(dsn, LeaseConfig(**config))  # type: ignore[arg-type]
    await lease.acquire()
    return lease


async def _terminate(url: str, pid: int) -> None:
    """Cut one session from the server side (what a network partition or a restart does), and
    wait until it has ended: without a timeout ``pg_terminate_backend`` only sends the signal,
    and the session may hold its locks a moment longer (a loaded machine saw it still alive)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_terminate_backend($1, 10000)", pid)
    finally:
        await conn.close()


def test_a_second_solo_node_is_refused_until_the_first_lets_go(dsn: str) -> None:
    async def body() -> None:
        first = await _lease(dsn, heartbeat_s=60)
        assert (first.node, first.epoch, first.held) == (0, 1, True)
        with pytest.raises(NodeRefusedError, match="another pyorder node serves this database"):
            await _lease(dsn)
        with pytest.raises(NodeRefusedError, match=r"node 0 held by .*:\d+ in solo mode"):
            await _lease(dsn, node=7)
        with pytest.raises(NodeRefusedError, match="solo mode serves this database"):
            await _lease(dsn, cluster=True)
        await first.release()
        second = await _lease(dsn)
        assert (second.node, second.epoch) == (0, 2)
        await second.release()

    run(body)


def test_cluster_nodes_get_distinct_numbers_and_keep_solo_nodes_out(dsn: str) -> None:
    async def body() -> None:
        leases = [await _lease(dsn, cluster=True) for _ in range(3)]
        assert sorted(lease.node for lease in leases) == [0, 1, 2]
        with pytest.raises(NodeRefusedError, match="another pyorder node serves"):
            await _lease(dsn)
        with pytest.raises(NodeRefusedError, match="node number 1 is held by a live node"):
            await _lease(dsn, cluster=True, node=1)
        await leases[1].release()
        again = await _lease(dsn, cluster=True, max_clock_skew_ms=50)
        assert (again.node, again.epoch) == (1, 2)
        for lease in [leases[0], leases[2], again]:
            await lease.release()

    run(body)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pyorder.storage.node_lease import LeaseConfig, NodeLease

    async def main() -> None:
        lease = NodeLease(sys.argv[1], LeaseConfig(heartbeat_s=0.05))
        await lease.acquire()
        lease.watch()
        print(lease.node, lease.epoch, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_a_killed_holders_number_is_claimed_at_once_with_a_new_epoch(dsn: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, dsn], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["0", "1"]

        async def refused() -> None:
            with pytest.raises(NodeRefusedError):
                await _lease(dsn)

        run(refused)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()

    async def body() -> None:
        # PostgreSQL ends the dead session when it reads the closed socket: a moment.
        for _ in range(100):
            try:
                lease = await _lease(dsn, max_clock_skew_ms=100)
                break
            except NodeRefusedError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the killed holder's lease was never freed")
        assert (lease.node, lease.epoch) == (0, 2)
        await lease.release()

    run(body)


async def _catalogue(store: PostgresStore) -> None:
    batch = WriteBatch()
    batch.warehouses.append(Warehouse(0, "main", "acme"))
    batch.skus.append(Sku(1, "acme", "tea", 500, "EUR"))
    batch.stock_rows.append(StockRow(1, 0, 10, 0, 0))
    await store.commit(batch)


def _stock_delta() -> WriteBatch:
    batch = WriteBatch()
    batch.stock_deltas[(1, 0)] = [0, 0, 1]
    return batch


def _orders_and_token() -> WriteBatch:
    """A batch of the single-order path: a small batch of placed orders (their reserved units
    its stock delta) and the commit token."""
    return WriteBatch(placed=placed(order(90, line(1)), order(91, line(1))), token=4242)


async def _sold(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT sold FROM stock WHERE sku = 1 AND warehouse = 0"))
    finally:
        await conn.close()


def test_a_commit_under_a_stale_epoch_is_fenced_off_and_writes_nothing(dsn: str) -> None:
    async def body() -> None:
        store = PostgresStore(dsn)
        await store.open()
        await _catalogue(store)
        old = await _lease(dsn, heartbeat_s=60, max_clock_skew_ms=50)
        store.fence = (old.node, old.epoch)
        await store.commit(_stock_delta())
        # The old holder's session is cut; a new process claims the number (epoch 2).
        await _terminate(dsn, old.backend_pid)
        new = None
        for _ in range(100):
            try:
                new = await _lease(dsn, max_clock_skew_ms=50)
                break
            except NodeRefusedError:
                await asyncio.sleep(0.05)
        assert new is not None
        assert new.epoch == 2
        with pytest.raises(FencedError, match="node 0 lost its lease"):
            await store.commit(_stock_delta())
        assert await _sold(dsn) == 1
        # Nor does a single-order path's batch, whose fence, stock UPDATE, orders, lines and
        # token share one statement: nothing of it lands, the reserved units neither.
        with pytest.raises(FencedError, match="node 0 lost its lease"):
            await store.commit(_orders_and_token())
        assert await store.get_order(90) is None
        assert not await store.committed(4242)
        assert (await store.get_stock(1))[0].reserved == 0
        store.fence = (new.node, new.epoch)
        await store.commit(_stock_delta())
        assert await _sold(dsn) == 2
        await new.release()
        await old.release()
        await store.close()

    run(body)


def test_a_claim_waits_for_the_old_epochs_commit_in_flight(dsn: str) -> None:
    """The fence holds the lease row's lock until COMMIT; the new claim raises the epoch only
    after that commit ended, so no write of the old epoch lands after the new one started."""

    async def body() -> None:
        old = await _lease(dsn, heartbeat_s=60, max_clock_skew_ms=50)
        writer = await asyncpg.connect(dsn)
        tx = writer.transaction()
        await tx.start()
        await writer.execute(
            "UPDATE node_leases SET seen_ms = seen_ms WHERE node = $1 AND epoch = $2",
            old.node,
            old.epoch,
        )
        await _terminate(dsn, old.backend_pid)
        await asyncio.sleep(0.2)  # the advisory lock is gone with the session
        claim = asyncio.create_task(_lease(dsn, max_clock_skew_ms=50))
        await asyncio.sleep(0.5)
        assert not claim.done()  # waiting on the row lock of the commit in flight
        await tx.commit()
        new = await asyncio.wait_for(claim, 5)
        assert new.epoch == 2
        await writer.close()
        await new.release()
        await old.release()

    run(body)


def test_the_heartbeat_claims_again_after_its_session_is_cut(dsn: str) -> None:
    async def body() -> None:
        lease = await _lease(dsn, heartbeat_s=0.05, max_clock_skew_ms=50)
        lease.watch()
        await _terminate(dsn, lease.backend_pid)
        for _ in range(200):
            if lease.claims == 2 and lease.held:
                break
            await asyncio.sleep(0.05)
        assert (lease.held, lease.node, lease.epoch, lease.claims) == (True, 0, 2, 2)
        await lease.release()

    run(body)


def test_the_heartbeat_survives_any_failure_of_its_session(dsn: str) -> None:
    """A session cut by a dying server can leave asyncpg's protocol half way: its next
    statement raises ``InternalClientError`` (a plain Exception, seen in a failover test, where
    the heartbeat died of it and the node never claimed its number again)."""

    async def body() -> None:
        lease = await _lease(dsn, heartbeat_s=0.05, max_clock_skew_ms=50)
        conn = lease._conn
        assert conn is not None
        broken = asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )
        real = asyncpg.connection.Connection.execute

        async def execute(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> str:
            if self is conn:  # the lease's first session only
                raise broken
            return await real(self, *args, **kwargs)

        with mock.patch.object(asyncpg.connection.Connection, "execute", execute):
            lease.watch()
            for _ in range(200):
                if lease.claims == 2 and lease.held:
                    break
                await asyncio.sleep(0.05)
        assert (lease.held, lease.epoch, lease.claims) == (True, 2, 2)
        await lease.release()

    run(body)


def test_cluster_nodes_cut_off_together_claim_their_own_numbers_again_at_once(dsn: str) -> None:
    """As after a database failover: every session ends at once. Each lease's heartbeat wakes
    when its session ends (not at its next beat, 5 s away), and takes its own number back."""

    async def body() -> None:
        config = {"cluster": True, "heartbeat_s": 5.0, "max_clock_skew_ms": 50}
        leases = [await _lease(dsn, **config) for _ in range(2)]
        assert [lease.node for lease in leases] == [0, 1]
        for lease in leases:
            lease.watch()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid",
                [lease.backend_pid for lease in leases],
            )
        finally:
            await conn.close()
        cut = time.monotonic()
        while not all(lease.claims == 2 and lease.held for lease in leases):
            assert time.monotonic() - cut < 3.0, [(x.claims, x.held) for x in leases]
            await asyncio.sleep(0.01)
        assert [(lease.node, lease.epoch) for lease in leases] == [(0, 2), (1, 2)]
        for lease in leases:
            await lease.release()

    run(body)


@pytest.mark.long
def test_ids_of_three_nodes_and_a_taken_over_number_never_repeat(dsn: str) -> None:
    """3 cluster nodes x 1,000,000 IDs, then node 1 dies and its number is claimed again (after
    the clock rule's wait) and mints 1,000,000 more: no ID twice."""

    async def body() -> None:
        leases = [await _lease(dsn, cluster=True, max_clock_skew_ms=20) for _ in range(3)]
        ids = [OrderIdGenerator(lease.node).next_ids(1_000_000) for lease in leases]
        dead = leases[1]
        await _terminate(dsn, dead.backend_pid)
        heir = None
        for _ in range(100):
            try:
                heir = await _lease(dsn, cluster=True, node=dead.node, max_clock_skew_ms=20)
                break
            except NodeRefusedError:
                await asyncio.sleep(0.05)
        assert heir is not None
        assert heir.epoch == dead.epoch + 1
        ids.append(OrderIdGenerator(heir.node).next_ids(1_000_000))
        assert len(np.unique(np.concatenate(ids))) == 4_000_000
        for lease in [*leases, heir]:
            await lease.release()

    run(body)


def test_one_cluster_node_leads_and_another_takes_over_when_it_dies(dsn: str) -> None:
    async def body() -> None:
        leases = [await _lease(dsn, cluster=True, heartbeat_s=0.05) for _ in range(3)]
        for lease in leases:
            lease.watch()
        assert [lease.leader for lease in leases] == [True, False, False]
        called: list[int] = []
        leases[1].on_leader.append(lambda: called.append(1))
        leases[2].on_leader.append(lambda: called.append(2))
        await _terminate(dsn, leases[0].backend_pid)
        for _ in range(200):
            if sum(lease.leader for lease in leases[1:]) == 1:
                break
            await asyncio.sleep(0.02)
        assert sum(lease.leader for lease in leases[1:]) == 1
        assert len(called) == 1
        assert leases[called[0]].leader
        await asyncio.sleep(0.2)  # the old leader claims again, but does not lead
        assert sum(lease.leader for lease in leases) == 1
        for lease in leases:
            await lease.release()

    run(body)


def test_the_store_names_each_live_nodes_address_and_the_leader(dsn: str) -> None:
    async def body() -> None:
        store = PostgresStore(dsn)
        await store.open()
        urls = [f"http://127.0.0.1:{9000 + i}" for i in range(3)]
        leases = [await _lease(dsn, cluster=True, url=url) for url in urls]
        try:
            assert [lease.node for lease in leases] == [0, 1, 2]
            assert [await store.peer_url(n) for n in range(3)] == urls
            assert await store.peer_url(3) is None  # no node holds it
            assert await store.leader_node() == 0
            await _terminate(dsn, leases[0].backend_pid)
            # A dead node's address is not given out, though its row stays.
            assert await store.peer_url(0) is None
            for _ in range(100):  # the next heartbeat of a live node takes the lead
                await leases[1]._lead()
                await leases[2]._lead()
                if await store.leader_node() is not None:
                    break
                await asyncio.sleep(0.02)
            assert await store.leader_node() in (1, 2)
            # The number claimed again carries the new holder's address.
            again = await _lease(dsn, cluster=True, url="http://127.0.0.1:9100")
            leases.append(again)
            assert (again.node, await store.peer_url(0)) == (0, "http://127.0.0.1:9100")
        finally:
            for lease in leases:
                await lease.release()
            await store.close()

    run(body)


def test_a_dead_nodes_number_is_adopted_for_good_and_freed_with_its_adopter(dsn: str) -> None:
    async def body() -> None:
        store = PostgresStore(dsn)
        await store.open()
        dead = await _lease(dsn, cluster=True, url="http://a")
        adopter = await _lease(dsn, cluster=True, url="http://b")
        others: list[NodeLease] = []
        try:
            old = (dead.node, dead.epoch)
            await _terminate(dsn, dead.backend_pid)
            # Seen moments ago: not adopted yet (a restarted node may take it back first).
            assert await store.adopt_dead(adopter, after_ms=60_000) == {}
            assert await store.adopt_dead(adopter, after_ms=0) == {dead.node: 0}  # held no units
            assert adopter.numbers == {adopter.node, dead.node}
            # Its orders' requests now go to the adopter, and no one else claims the number.
            assert await store.peer_url(dead.node) == "http://b"
            others.append(await _lease(dsn, cluster=True))
            assert others[-1].node not in adopter.numbers
            # The dead node's epoch moved on: its commits are fenced off.
            conn = await asyncpg.connect(dsn)
            try:
                assert await conn.execute(FENCE_SQL, *old) == "UPDATE 0"
            finally:
                await conn.close()
            assert await store.adopt_dead(adopter, after_ms=0) == {}  # held now
            # The adopter gone, both its numbers are free again.
            await adopter.release()
            others.append(await _lease(dsn, cluster=True))
            assert others[-1].node == min(dead.node, adopter.node)
        finally:
            for lease in (dead, adopter, *others):
                await lease.release()
            await store.close()

    run(body)
