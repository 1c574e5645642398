"""Risk decisions and orders in review put in a real server's database as the writers leave
them, for the review queue's end-to-end tests: ``record_decisions`` adds decisions to a running
server's store (as if risk control had decided those orders); ``hold_for_review`` restarts the
server with orders in review (the order ``in_review`` with the end of its review hold as its
deadline, and its decision), the way a restart finds them. Placing an order the policy holds is
the order book's own path (``tests/server/test_risk_intake.py``); this tests what follows."""

import asyncio
import sqlite3
import time

import asyncpg

from pyorder.risk import decisions
from pyorder.risk.records import Decision, Reason
from tests.server.e2e_lib import Server

REVIEW_HOLD_MS = 72 * 3600 * 1000


def decision(order_id: str, merchant: str, outcome: str = "review") -> Decision:
    """A decision of ``merchant``'s on the order (scored 71: held by the default thresholds)."""
    return Decision(
        id=int(order_id),
        buyer="A",
        merchant=merchant,
        at_ms=int(time.time() * 1000),
        outcome=outcome,
        three_ds=False,
        score=71,
        model="gbt-test",
        decided_by="score",
        fired=(),
        reasons=(Reason("amount", 1200.0, 0.8), Reason("ip_region_mismatch", None, 0.2)),
    )


def _write(srv: Server, found: list[Decision], deadlines: list[tuple[int, int]]) -> None:
    """The decisions (their placed columns, as the writers insert them) and, for each
    (deadline_ms, order id) of ``deadlines``, the order in review, in one transaction."""
    rows = [decisions.decision_row(d) for d in found]
    hold = "UPDATE orders SET status = 'in_review', deadline_ms = {0} WHERE id = {1}"
    dsn = srv.proc.database
    if dsn is None:
        names = ", ".join(decisions.PLACED_COLUMNS)
        insert = f"INSERT INTO risk_decisions ({names}) VALUES ({', '.join('?' * len(rows[0]))})"
        conn = sqlite3.connect(srv.proc.data_dir / "pyorder.sqlite3", isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(hold.format("?", "?"), deadlines)
            conn.executemany(insert, rows)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return

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


def record_decisions(srv: Server, found: list[Decision]) -> None:
    """Store decisions of orders on the running ``srv`` (read from the store: no restart)."""
    _write(srv, found, [])


def hold_for_review(
    srv: Server, order_ids: list[str], merchant: str, hold_ms: int = REVIEW_HOLD_MS
) -> None:
    """Restart ``srv`` with the orders in review, as the order book leaves them: status
    ``in_review``, the deadline the end of the review hold, and a decision of ``merchant``'s."""
    srv.stop()
    now = int(time.time() * 1000)
    held = [decision(oid, merchant) for oid in order_ids]
    _write(srv, held, [(now + hold_ms, int(oid)) for oid in order_ids])
    srv.start()
