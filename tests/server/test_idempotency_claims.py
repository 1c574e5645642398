"""Claims of Idempotency-Keys in cluster mode (``pyorder.storage.key_claims``), in process: two
cluster platforms on one fresh PostgreSQL database. The store's claim statement (who may run a
key, which claims are dead), and the handler around it: a failed request gives its claim up, a
key in flight on one node is 409 on the other, a stored response replays on both."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from unittest import mock

import asyncpg
import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from pyorder import Config, Platform, Principal, Role
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import Unavailable
from pyorder.model import IdempotencyRecord, WriteBatch
from pyorder.server.idempotency import HEADER, REPLAYED, Idempotency, KeyInFlight
from pyorder.storage.key_claims import CLAIM_GRACE_MS, CLAIM_TTL_MS
from tests.support.cluster import two_nodes
from tests.support.postgres import fresh_postgres_database

BUYER = Principal(Role.BUYER, "alice")
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_claims") as url:
        yield url


def _claims(platform: Platform) -> tuple[int, int]:
    return platform.claim.node, platform.claim.epoch


async def _claim_row(dsn: str, key: str) -> tuple[int, int] | None:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT node, epoch FROM idempotency_claims WHERE principal = $1 AND key = $2",
            BUYER.key,
            key,
        )
    finally:
        await conn.close()
    return None if row is None else (int(row[0]), int(row[1]))


async def _execute(dsn: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def test_a_key_is_claimed_once_and_dead_claims_are_taken_over(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_nodes(dsn, tmp_path) as (a, b):
            sa, sb = a.store, b.store
            cutoff = now_ms() - DAY_MS
            assert _claims(a) != _claims(b)

            # One node claims; the other finds it in flight; the first's own stale claim (a
            # release that failed) is its own to take again; a release frees it for the other.
            first = await sa.claim_idempotency(BUYER.key, "k1", *_claims(a), cutoff)
            assert (first.claimed, first.stored) == (True, None)
            busy = await sb.claim_idempotency(BUYER.key, "k1", *_claims(b), cutoff)
            assert (busy.claimed, busy.stored) == (False, None)
            assert (await sa.claim_idempotency(BUYER.key, "k1", *_claims(a), cutoff)).claimed
            await sa.release_idempotency(BUYER.key, "k1", *_claims(a))
            assert await _claim_row(dsn, "k1") is None
            assert (await sb.claim_idempotency(BUYER.key, "k1", *_claims(b), cutoff)).claimed
            assert await _claim_row(dsn, "k1") == _claims(b)
            # A release names its claim: a's release leaves b's claim alone.
            await sa.release_idempotency(BUYER.key, "k1", *_claims(a))
            assert await _claim_row(dsn, "k1") == _claims(b)

            # A stored response is returned instead of a claim; past retention, it comes back
            # with the claim (the caller purges it).
            record = IdempotencyRecord(BUYER.key, "k2", "c1:x", 201, b"{}", now_ms())
            await sa.commit(WriteBatch(idempotency=[record]))
            replay = await sb.claim_idempotency(BUYER.key, "k2", *_claims(b), cutoff)
            assert (replay.claimed, replay.stored) == (False, record)
            late = await sb.claim_idempotency(BUYER.key, "k2", *_claims(b), record.created_ms + 1)
            assert (late.claimed, late.stored) == (True, record)

            # Dead claims: an epoch the number has moved past; a node without its lock that
            # has been silent for the grace; any claim past the TTL. A silent node still
            # within its grace keeps its claim.
            node, epoch = _claims(a)
            now = now_ms()
            insert = (
                "INSERT INTO idempotency_claims (principal, key, node, epoch, claimed_ms)"
                " VALUES ($1, $2, $3, $4, $5)"
            )
            await _execute(dsn, insert, BUYER.key, "old-epoch", node, epoch - 1, now)
            await _execute(dsn, insert, BUYER.key, "too-old", *_claims(a), now - CLAIM_TTL_MS - 1)
            await _execute(
                dsn,
                "INSERT INTO node_leases (node, epoch, holder, mode, acquired_ms, seen_ms)"
                " VALUES (200, 1, 'gone:1', 'cluster', $1, $1)",
                now,
            )
            await _execute(dsn, insert, BUYER.key, "silent", 200, 1, now)
            for key in ("old-epoch", "too-old"):
                assert (await sb.claim_idempotency(BUYER.key, key, *_claims(b), cutoff)).claimed
            in_grace = await sb.claim_idempotency(BUYER.key, "silent", *_claims(b), cutoff)
            assert not in_grace.claimed
            await _execute(
                dsn, "UPDATE node_leases SET seen_ms = $1 WHERE node = 200", now - CLAIM_GRACE_MS
            )
            assert (await sb.claim_idempotency(BUYER.key, "silent", *_claims(b), cutoff)).claimed

            # Purging old keys takes their claims along.
            await sa.purge_idempotency(now_ms() + 1)
            for key in ("k1", "old-epoch", "too-old", "silent"):
                assert await _claim_row(dsn, key) is None

    asyncio.run(body())


Effect = Callable[[Principal, bytes], Awaitable[tuple[int, object]]]


def _request(key: str, body: bytes = b'{"x": 1}') -> web.Request:
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    return make_mocked_request("POST", "/v1/things", headers={HEADER: key}, payload=payload)


def test_the_handler_claims_releases_and_replays_across_nodes(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_nodes(dsn, tmp_path) as (a, b):
            on_a, on_b = Idempotency(a), Idempotency(b)
            runs: list[str] = []

            async def fails(who: Principal, data: bytes) -> tuple[int, object]:
                runs.append("fails")
                raise Unavailable("a provider is down")

            async def creates(who: Principal, data: bytes) -> tuple[int, object]:
                runs.append("creates")
                return 201, {"id": "1"}

            # A 5xx stores nothing and gives the claim up: the other node runs the key.
            with pytest.raises(Unavailable):
                await on_a.handle(_request("k"), BUYER, fails)
            assert await _claim_row(dsn, "k") is None
            created = await on_b.handle(_request("k"), BUYER, creates)
            assert created.status == 201
            assert REPLAYED not in created.headers
            # The stored response replays on both nodes, without running again.
            for node in (on_a, on_b):
                again = await node.handle(_request("k"), BUYER, creates)
                assert (again.status, again.body) == (201, created.body)
                assert again.headers[REPLAYED] == "true"
            assert runs == ["fails", "creates"]

            # A key in flight on one node is 409 on the other.
            gate = asyncio.Event()

            async def waits(who: Principal, data: bytes) -> tuple[int, object]:
                await gate.wait()
                return 201, {"id": "2"}

            running = asyncio.create_task(on_a.handle(_request("slow"), BUYER, waits))
            while await _claim_row(dsn, "slow") is None:
                await asyncio.sleep(0.01)
            with pytest.raises(KeyInFlight):
                await on_b.handle(_request("slow"), BUYER, creates)
            gate.set()
            assert (await running).status == 201
            replay = await on_b.handle(_request("slow"), BUYER, creates)
            assert replay.headers[REPLAYED] == "true"
            assert runs == ["fails", "creates"]

    asyncio.run(body())


def test_solo_mode_claims_nothing_in_the_database(dsn: str, tmp_path: Path) -> None:
    """Without cluster mode a keyed request costs what it did: the lookup, no claim."""

    async def body() -> None:
        platform = Platform(Config(data_dir=tmp_path, database=dsn))
        await platform.start()
        try:
            handler = Idempotency(platform)
            with mock.patch.object(
                platform.store, "claim_idempotency", side_effect=AssertionError("claimed")
            ):

                async def creates(who: Principal, data: bytes) -> tuple[int, object]:
                    return 201, {"id": "1"}

                assert (await handler.handle(_request("solo"), BUYER, creates)).status == 201
                replay = await handler.handle(_request("solo"), BUYER, creates)
                assert replay.headers[REPLAYED] == "true"
            assert await _claim_row(dsn, "solo") is None
        finally:
            await platform.stop()

    asyncio.run(body())
