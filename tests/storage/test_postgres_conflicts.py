"""PostgreSQL commits under conflicts with other writers (real server): stock rows locked in
(sku, warehouse) order whatever the batch's order; a deadlock with another transaction and an
injected serialization failure retried to success with nothing written twice; a commit that
keeps conflicting given up as ``StorageError`` with nothing written. The retry policy's waits
are checked without a server in ``test_retry_policy.py``."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import pytest

from pyorder.model import WriteBatch
from pyorder.storage.base import StorageError
from pyorder.storage.postgres import PostgresStore
from pyorder.storage.retry import RetryPolicy
from tests.support.postgres import fresh_postgres_database

from .records import ON_HAND, catalog, line, order

A, B = (0, 0), (1, 0)
"""Two stock rows, (sku, warehouse), A before B in the lock order."""

STORE_DEADLOCK_TIMEOUT = "500ms"
"""The store's sessions check for a deadlock after waiting this long on a lock, well before the
other party's (``OTHER_DEADLOCK_TIMEOUT``): the store's transaction is the one PostgreSQL
aborts, deterministically."""
OTHER_DEADLOCK_TIMEOUT = "60s"

_LOCK = "SELECT 1 FROM stock WHERE sku = $1 AND warehouse = $2 FOR NO KEY UPDATE"
_ADD_ON_HAND = "UPDATE stock SET on_hand = on_hand + $1 WHERE sku = $2 AND warehouse = $3"


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_conflict") as url:
        yield url


def run(dsn: str, body: Callable[[PostgresStore], Awaitable[None]], retry: RetryPolicy) -> None:
    """``body(store)`` on a store over ``dsn`` holding SKUs 0 and 1 in warehouse 0."""

    async def main() -> None:
        store = PostgresStore(
            f"{dsn}?deadlock_timeout={STORE_DEADLOCK_TIMEOUT}", max_size=2, retry=retry
        )
        await store.open()
        try:
            await store.commit(catalog(n_skus=2, n_warehouses=1))
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def one_order_on_both_rows() -> WriteBatch:
    """An order reserving 3 units of B and 2 of A, its stock deltas listed B first: the batch's
    order is the opposite of the lock order."""
    return WriteBatch(
        orders=[order(1, line(B[0], 3), line(A[0], 2))],
        stock_deltas={B: [0, 3, 0], A: [0, 2, 0]},
    )


async def waiting_on_locks(conn: asyncpg.Connection, n: int) -> None:
    """Return once ``n`` sessions of this database wait on a lock (10 s at most)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(1000):
        if await conn.fetchval(sql) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{n} sessions never waited on a lock")


async def stock(conn: asyncpg.Connection) -> dict[tuple[int, int], tuple[int, int]]:
    rows = await conn.fetch("SELECT sku, warehouse, on_hand, reserved FROM stock")
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_stock_rows_are_locked_in_sku_warehouse_order(dsn: str) -> None:
    """Another transaction holds B; a commit of a batch listing B before A takes A first and
    waits for B (the old UPDATE took the rows in the arrays' order: B first, A still free)."""

    async def body(store: PostgresStore) -> None:
        other = await asyncpg.connect(dsn)
        probe = await asyncpg.connect(dsn)
        try:
            async with other.transaction():
                await other.execute(_LOCK, *B)
                committing = asyncio.create_task(store.commit(one_order_on_both_rows()))
                await waiting_on_locks(probe, 1)
                with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
                    await probe.execute(_LOCK.replace("UPDATE", "UPDATE NOWAIT"), *A)
            await committing
            assert await stock(probe) == {A: (ON_HAND, 2), B: (ON_HAND, 3)}
            assert not store.conflict_retries
        finally:
            await other.close()
            await probe.close()

    run(dsn, body, RetryPolicy())


@pytest.mark.parametrize("attempts", [5, 1])
def test_a_deadlock_is_retried_and_commits_once(dsn: str, attempts: int) -> None:
    """Another transaction takes B then A while the commit takes A then B (the lock order, above):
    a real deadlock, which
    PostgreSQL resolves by aborting the commit's transaction. Retried, the commit succeeds once
    the other has committed, and its rows and stock deltas are there once; with no retry left
    (``attempts=1``) it fails as ``StorageError`` and none of it is there."""

    async def body(store: PostgresStore) -> None:
        other = await asyncpg.connect(
            dsn, server_settings={"deadlock_timeout": OTHER_DEADLOCK_TIMEOUT}
        )
        probe = await asyncpg.connect(dsn)
        try:
            async with other.transaction():
                await other.execute(_ADD_ON_HAND, 7, *B)
                committing = asyncio.create_task(store.commit(one_order_on_both_rows()))
                await waiting_on_locks(probe, 1)  # the commit holds A and waits for B
                await other.execute(_ADD_ON_HAND, 7, *A)  # waits until the commit is aborted
            # The other transaction has committed; the commit runs again, or has given up.
            if attempts == 1:
                with pytest.raises(StorageError, match="deadlock detected") as failed:
                    await committing
                assert isinstance(failed.value.__cause__, asyncpg.DeadlockDetectedError)
                assert store.conflict_failures == 1
                assert await stock(probe) == {A: (ON_HAND + 7, 0), B: (ON_HAND + 7, 0)}
                assert await probe.fetchval("SELECT count(*) FROM orders") == 0
            else:
                await committing
                # Once, or more when a retry came before the other session took A (a busy
                # machine): a deadlock each time, never another kind of failure.
                assert set(store.conflict_retries) == {"40P01"}, store.conflict_retries
                assert store.conflict_failures == 0
                assert await stock(probe) == {A: (ON_HAND + 7, 2), B: (ON_HAND + 7, 3)}
                assert await probe.fetchval("SELECT count(*) FROM orders") == 1
                assert await probe.fetchval("SELECT count(*) FROM order_lines") == 2
        finally:
            await other.close()
            await probe.close()

    run(dsn, body, RetryPolicy(max_attempts=attempts))


_INJECT_SERIALIZATION_FAILURES = (
    "CREATE SEQUENCE aborts;"
    " CREATE FUNCTION abort_first() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN"
    # A sequence is not transactional: the count survives the aborts it causes.
    "   IF nextval('aborts') <= TG_ARGV[0]::bigint THEN"
    "     RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure';"
    "   END IF;"
    "   RETURN NEW;"
    " END $$;"
)


@pytest.mark.parametrize(("failures", "commits"), [(3, True), (5, False)])
def test_serialization_failures_are_retried_a_bounded_number_of_times(
    dsn: str, failures: int, commits: bool
) -> None:
    """The server aborts the commit's first ``failures`` runs with 40001 (a trigger on the
    orders raises it, after the stock UPDATE ran): 3 are retried to success, 5 exhaust the 5
    attempts and the commit fails with nothing written."""

    async def body(store: PostgresStore) -> None:
        probe = await asyncpg.connect(dsn)
        try:
            await probe.execute(_INJECT_SERIALIZATION_FAILURES)
            await probe.execute(
                "CREATE TRIGGER abort_first BEFORE INSERT ON orders FOR EACH ROW"
                f" EXECUTE FUNCTION abort_first({failures})"
            )
            if commits:
                await store.commit(one_order_on_both_rows())
                assert store.conflict_retries == {"40001": failures}
                assert await stock(probe) == {A: (ON_HAND, 2), B: (ON_HAND, 3)}
                assert await probe.fetchval("SELECT count(*) FROM orders") == 1
            else:
                with pytest.raises(StorageError, match="tried 5 times") as failed:
                    await store.commit(one_order_on_both_rows())
                assert isinstance(failed.value.__cause__, asyncpg.SerializationError)
                assert store.conflict_retries == {"40001": 4}
                assert store.conflict_failures == 1
                assert await stock(probe) == {A: (ON_HAND, 0), B: (ON_HAND, 0)}
                assert await probe.fetchval("SELECT count(*) FROM orders") == 0
        finally:
            await probe.close()

    # Waits of at most 1 ms: the retries' count is what is checked here, not their spacing.
    run(dsn, body, RetryPolicy(base_delay_s=0.001, max_delay_s=0.001))
