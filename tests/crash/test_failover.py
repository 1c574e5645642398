"""Database failover under load: a server on a PostgreSQL primary with a synchronous standby
(``scripts/pg_pair.sh``, through the multi-host DSN), the primary's postmaster SIGKILLed while
clients place orders, the standby promoted; the server must recover by itself (its in-doubt
batches fail with 503, it reconnects to the new primary, claims its node number again and
rebuilds), and then every order it acknowledged, before and after the kill, is on the new
primary (RPO 0), stock is conserved, and its view equals the database's. The time from the kill
to the first order acknowledged after it (the RTO) is printed.

The load's choices come from one seed, printed and taken from ``PYORDER_CRASH_SEED``.
"""

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from tests.support.pg_pair import PgPair, pg_pair
from tests.support.server import ServerProcess

from .harness import (
    ADMIN,
    Api,
    Ledger,
    PostgresReader,
    check_api,
    check_new_orders,
    check_store,
    order_worker,
    place_order,
    restock,
    seed,
    server_errors_logged,
)

CLIENTS = 12
BUDGET = 3000
RESTOCK_TIMES = 10
"""Each cycle first adds ten times the catalogue's restock (30,000 units of the staple SKU):
more than a cycle's load sells, so the probe orders (one unit of it) are never out of stock
(a CI run once sold it out in the second cycle, and no probe could succeed)."""
RTO_LIMIT_S = 20.0
"""The longest a failover may keep orders from succeeding in the test (it takes ~1-3 s: the
heartbeat's second, the rebuild's retry, the reload)."""


def _rng() -> random.Random:
    seed_ = int(os.environ.get("PYORDER_CRASH_SEED", "0")) or random.randrange(1, 2**32)
    print(f"failover test seed: PYORDER_CRASH_SEED={seed_}")
    return random.Random(seed_)


def test_primary_killed_under_load_then_standby_promoted(tmp_path: Path) -> None:
    with pg_pair() as pair:
        server = ServerProcess(tmp_path / "data", database=pair.dsn)
        try:
            server.start()
            asyncio.run(_failover(pair, server, _rng(), cycles=1))
        finally:
            server.kill()


@pytest.mark.long
def test_failover_after_failover(tmp_path: Path) -> None:
    """Twice: after the first failover a new standby is made of the new primary (the runbook's
    ``pg_pair.sh`` steps: a base backup under the old primary's name), then it fails over again.
    """
    with pg_pair() as pair:
        server = ServerProcess(tmp_path / "data", database=pair.dsn)
        try:
            server.start()
            asyncio.run(_failover(pair, server, _rng(), cycles=2))
        finally:
            server.kill()


async def _failover(pair: PgPair, server: ServerProcess, rng: random.Random, cycles: int) -> None:
    async with Api(server) as api:
        ledger = Ledger(await seed(api))
        await _standby_in_metrics(api)
    for cycle in range(cycles):
        if cycle:
            await asyncio.to_thread(pair.rebuild_standby)
        async with Api(server) as api:  # the probe's SKU stays in stock through the cycle
            await restock(api, ledger.cat, times=RESTOCK_TIMES)
        await _one_failover(pair, server, ledger, rng, cycle)
    assert not ledger.server_errors, ledger.server_errors


async def _one_failover(
    pair: PgPair, server: ServerProcess, ledger: Ledger, rng: random.Random, cycle: int
) -> None:
    stop = asyncio.Event()
    async with Api(server) as api:
        workers = [
            asyncio.create_task(
                order_worker(
                    api, ledger, random.Random(rng.random()), f"c{cycle}w{i}", stop, BUDGET
                )
            )
            for i in range(CLIENTS)
        ]
        await asyncio.sleep(rng.uniform(0.5, 1.0))
        acked_before = ledger.acked_in_run
        assert acked_before > 0, "no order was acknowledged before the kill"
        assert ledger.in_flight > 0
        pair.kill_primary()
        killed_at = time.monotonic()
        await asyncio.to_thread(pair.promote)
        promoted_s = time.monotonic() - killed_at
        rto_s = await _first_order(api, ledger, rng, killed_at, f"c{cycle}probe")
        await asyncio.sleep(0.5)  # the load goes on on the new primary
        stop.set()
        await asyncio.gather(*workers)
        await restock(api, ledger.cat)  # the load may have sold out what check_new_orders buys
    print(
        f"failover {cycle}: promoted {promoted_s:.2f} s after the kill; RTO (kill to the first"
        f" order acknowledged after it) {rto_s:.2f} s; acknowledged {acked_before} before the"
        f" kill, {ledger.acked_in_run - acked_before} after; 503 answers {ledger.unavailable}"
    )
    reader = PostgresReader(pair.dsn)
    state = await reader.read()
    print("  store:", check_store(ledger, state))  # every acknowledged order is there: RPO 0
    async with Api(server) as api:
        await check_api(api, ledger, state)
        await check_new_orders(api, ledger, state, f"after-failover-{cycle}")


async def _standby_in_metrics(api: Api) -> None:
    """``/metrics`` shows the synchronous standby the primary streams to, and its lag."""
    async with api.session.get(api.server.url + "/metrics", headers=api.auth(*ADMIN)) as resp:
        assert resp.status == 200
        text = await resp.text()
    lines = text.splitlines()
    assert 'pyorder_pg_standbys{state="streaming",sync_state="sync"} 1.0' in lines, text
    lag = [ln for ln in lines if ln.startswith("pyorder_pg_replication_lag_bytes{")]
    assert len(lag) == 1, text
    assert 'sync_state="sync"' in lag[0]
    assert float(lag[0].rsplit(" ", 1)[1]) >= 0


def _lease_lines(server: ServerProcess, last: int = 15) -> str:
    """The last lines of the server's log about its node lease (why it did not claim again)."""
    log = server.data_dir.parent / f"server-{server.port}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join([ln for ln in lines if "node lease" in ln][-last:])


async def _first_order(
    api: Api, ledger: Ledger, rng: random.Random, since: float, prefix: str
) -> float:
    """Seconds from ``since`` to the first order acknowledged of those sent from now on (one
    unit of the staple SKU, always in stock), one every 20 ms at most; fails past
    ``RTO_LIMIT_S``."""
    staple = ledger.cat.skus[1]
    for n in range(100_000):
        status = await place_order(api, ledger, rng, f"{prefix}.{n}", sku=staple)
        if status == 201:
            return time.monotonic() - since
        assert time.monotonic() - since < RTO_LIMIT_S, (
            f"no order succeeded after the failover (the last answer: {status}; refusals:"
            f" {dict(ledger.refused_codes)}); the server's log:\n"
            + server_errors_logged(api.server)
            + "\nits node lease:\n"
            + _lease_lines(api.server)
        )
        await asyncio.sleep(0.02)
    raise AssertionError("unreachable: the time limit comes first")
