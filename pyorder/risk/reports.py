"""Reporting fraud on orders and reading the reports (``docs/risk.md``, "Fraud reports"): who
may do what. An admin reports any order, a merchant an order holding its SKUs (another's is
404), buyers none (403). The first report of an order is kept; a later one is answered with it.
A report is answered once it is durable (staged in the intake's batch: ``pyorder.risk.fraud``).
"""

from typing import TYPE_CHECKING

from pyorder.auth import Principal, Role
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import NotFound
from pyorder.risk.fraud import FRAUD
from pyorder.risk.records import FraudReport, FraudSource
from pyorder.storage.base import Store

if TYPE_CHECKING:
    from pyorder.orders.service import Orders

MAX_NOTE = 500
"""Characters of a report's note."""


class FraudReports:
    """Reporting fraud on orders and reading the reports: ``orders`` checks who may see an
    order, ``intake`` stages a report, ``store`` reads what committed."""

    def __init__(self, intake: Intake, store: Store, orders: "Orders") -> None:
        self._intake = intake
        self._store = store
        self._orders = orders

    async def report(
        self, who: Principal, order_id: int, source: FraudSource, note: str
    ) -> tuple[FraudReport, bool]:
        """Report order ``order_id`` as fraud; (the stored report, whether this call made it).
        NotFound when the caller may not see the order (or it does not exist)."""
        who.require(Role.MERCHANT, Role.ADMIN)
        order = await self._orders.get(who, order_id)
        found = await self._store.fraud_report(order_id)
        if found is not None:
            return found, False
        mine = FraudReport(
            order_id,
            order.lines[0].merchant if order.lines else "",
            source,
            who.key,
            now_ms(),
            note,
        )
        self._intake.batch.part(FRAUD).reports.setdefault(order_id, mine)
        await self._intake.durable()
        stored = await self._store.fraud_report(order_id)
        if stored is None:
            raise RuntimeError(f"the fraud report of order {order_id} committed and is not stored")
        return stored, stored == mine

    async def get(self, who: Principal, order_id: int) -> FraudReport:
        """The report of an order the caller may see; NotFound when there is none."""
        who.require(Role.MERCHANT, Role.ADMIN)
        await self._orders.get(who, order_id)
        found = await self._store.fraud_report(order_id)
        if found is None:
            raise NotFound(f"order {order_id} has no fraud report")
        return found
