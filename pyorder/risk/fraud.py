"""The fraud reports' share of the unit of work (``pyorder.kernel.unit``) and their reads: the
table ``fraud_reports`` (schema version 20), one row per order, the first report kept
(``INSERT ... ON CONFLICT DO NOTHING``). The service is ``pyorder.risk.reports``.

Fraud reports of orders (``docs/risk.md``, "Fraud reports"): a chargeback the platform or a
merchant received, or a merchant's own finding, recorded once per order. With the decisions of
the allowed orders risk control samples (their features kept, ``--risk-sample-allowed``) they
are the labels the review queue cannot give: what was allowed and turned out to be fraud, and,
once old enough without a report, what was allowed and was not (``python -m
pyorder.risk.labels``). A report on an order approved by a reviewer makes that review's label
fraud too.

Who may report and read: ``pyorder.risk.reports``. It changes nothing else of the order:
refunds and disputes are the payments' (``docs/payments.md``). Times are ms since the Unix
epoch (UTC).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.risk.records import FraudReport, FraudSource

COLUMNS = "order_id, merchant, source, reporter, reported_ms, note"
REPORT_SQL = f"SELECT {COLUMNS} FROM fraud_reports WHERE order_id = {{0}}"
"""One order's report; format with the placeholder of its id."""
_INSERT = Statement(
    f"INSERT INTO fraud_reports ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (order_id) DO NOTHING",
    f"INSERT INTO fraud_reports ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (order_id) DO NOTHING",
)


def report_from_row(r: Row) -> FraudReport:
    return FraudReport(int(r[0]), str(r[1]), FraudSource(r[2]), str(r[3]), int(r[4]), str(r[5]))


@dataclass
class FraudRows:
    """The reports staged in one batch, by order id (the first staged wins, as in the store)."""

    reports: dict[int, FraudReport] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.reports)

    def writes(self) -> Iterator[Write]:
        if self.reports:
            yield (
                _INSERT,
                [
                    (r.order_id, r.merchant, r.source.value, r.reporter, r.reported_ms, r.note)
                    for r in self.reports.values()
                ],
            )


def _nothing(rows: Sequence[Sequence[Row]]) -> None:
    """The reports part loads nothing at start (its reads are made on demand)."""


FRAUD: PartKind[FraudRows, None] = PartKind("fraud", FraudRows, (), _nothing)
"""The fraud reports' part (``pyorder.parts``): touches no other table."""
