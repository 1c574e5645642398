"""Reporting fraud on orders and reading the reports (``docs/risk.md``, "Fraud reports"): who
may do what. An admin reports and reads any order's, a merchant those of the orders whose risk
decision is its own (the order's first line's merchant, as ``pyorder.risk.reviews``; another's
is 404), buyers none (403). The first report of an order is kept; a later one is answered with
it. A report is staged in the intake's batch (``pyorder.risk.fraud``) and answered once durable.
"""

from pyorder.auth import Principal, Role
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import NotFound
from pyorder.orders.model import Order
from pyorder.risk.fraud import FRAUD
from pyorder.risk.records import FraudReport, FraudSource
from pyorder.storage.base import Store

MAX_NOTE = 500
"""Characters of a report's note."""


class FraudReports:
    """Reporting fraud on orders and reading the reports: ``intake`` stages a report,
    ``store`` reads what committed."""

    def __init__(self, intake: Intake, store: Store) -> None:
        self._intake = intake
        self._store = store

    async def report(
        self, who: Principal, order_id: int, source: FraudSource, note: str
    ) -> tuple[FraudReport, bool]:
        """Report order ``order_id`` as fraud: (the report, whether this call made it). The
        first report is kept: one committed, or staged here and not committed yet, is the
        answer. Otherwise this one is staged, durable with the caller's idempotency record
        (the handler waits for both: one commit). Two nodes reporting an order in the same
        instant both answer with their own; the store keeps one. NotFound when the caller may
        not see the order's decision (or it does not exist)."""
        order = await self._order(who, order_id)
        found = await self._store.fraud_report(order_id)
        if found is None:
            staged = (p.reports.get(order_id) for p in self._intake.staged_parts(FRAUD))
            found = next((r for r in staged if r is not None), None)
        if found is not None:
            return found, False
        mine = FraudReport(order_id, order.lines[0].merchant, source, who.key, now_ms(), note)
        self._intake.batch.part(FRAUD).reports[order_id] = mine
        return mine, True

    async def _order(self, who: Principal, order_id: int) -> Order:
        """The committed order, if the caller may report it: an admin any, a merchant its
        decision's (the order's first line's merchant, as ``Reviews``)."""
        who.require(Role.MERCHANT, Role.ADMIN)
        order = await self._store.get_order(order_id)
        if (
            order is None
            or not order.lines
            or (who.role is not Role.ADMIN and order.lines[0].merchant != who.key)
        ):
            raise NotFound(f"order {order_id} does not exist")
        return order

    async def get(self, who: Principal, order_id: int) -> FraudReport:
        """The report of an order the caller may see; NotFound when there is none."""
        await self._order(who, order_id)
        found = await self._store.fraud_report(order_id)
        if found is None:
            raise NotFound(f"order {order_id} has no fraud report")
        return found
