"""Orders put in review on a real server the way a restart finds them (the store's rows: the
order ``in_review`` with the end of its review hold as its deadline, and its decision), for the
review queue's end-to-end tests. Placing an order the policy holds is the order book's own path
(its tests); this tests what follows. It needs a core that holds orders in review
(``OrderBook.approve``): ``needs_review_core`` skips the tests before it."""

import asyncio
import sqlite3
import time

import asyncpg
import pytest

from pyorder._core import OrderBook
from pyorder.risk import decisions
from pyorder.risk.records import Decision, Reason
from tests.server.e2e_lib import Server

HOLDS_REVIEWS = hasattr(OrderBook, "approve")
needs_review_core = pytest.mark.skipif(
    not HOLDS_REVIEWS, reason="the order book does not hold orders in review yet"
)


def hold_for_review(
    srv: Server, order_ids: list[str], merchant: str, hold_ms: int = 72 * 3600 * 1000
) -> None:
    """Restart ``srv`` with the orders in review, as the order book leaves them: status
    ``in_review``, the deadline the end of the review hold, and a decision of ``merchant``'s
    (written as the writers write it: the first 11 columns)."""
    srv.stop()
    now = int(time.time() * 1000)
    held = [
        Decision(
            id=int(oid),
            buyer="A",
            merchant=merchant,
            at_ms=now,
            outcome="review",
            three_ds=False,
            score=71,
            model="gbt-test",
            decided_by="score",
            fired=(),
            reasons=(Reason("amount", 1200.0, 0.8), Reason("ip_region_mismatch", None, 0.2)),
        )
        for oid in order_ids
    ]
    rows = [decisions.decision_row(d) for d in held]
    deadlines = [(now + hold_ms, int(oid)) for oid in order_ids]
    hold = "UPDATE orders SET status = 'in_review', deadline_ms = {0} WHERE id = {1}"
    dsn = srv.proc.database
    if dsn is None:
        names = ", ".join(decisions.PLACED_COLUMNS)
        insert = f"INSERT INTO risk_decisions ({names}) VALUES ({', '.join('?' * len(rows[0]))})"
        conn = sqlite3.connect(srv.proc.data_dir / "pyorder.sqlite3", isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.executemany(hold.format("?", "?"), deadlines)
            conn.executemany(insert, rows)
            conn.execute("COMMIT")
        finally:
            conn.close()
    else:

        async def write() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                async with conn.transaction():
                    await conn.executemany(hold.format("$1", "$2"), deadlines)
                    columns = [list(c) for c in zip(*rows, strict=True)]
                    await conn.execute(decisions.INSERT_PLACED_SQL, *columns)
            finally:
                await conn.close()

        asyncio.run(write())
    srv.start()
