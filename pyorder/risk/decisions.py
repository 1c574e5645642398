"""Risk decisions as stored (``risk_decisions``, schema version 14) and the review queue's share
of the unit of work (``pyorder.kernel.unit``).

The Rust order book decides every order it takes (``OrderRows``). An order it allows keeps its
decision in its own row (``orders.risk_packed``, schema version 21: one MessagePack array of
~40 bytes, read by ``unpack_order_risk``; ``orders.risk``, JSON text, where builds before that
version wrote it), written with the order; a decision that holds an order for review,
blocks an attempt, or allows an order sampled for labels (``--risk-sample-allowed``: its
features kept) is a ``risk_decisions`` row, whose ``PLACED_COLUMNS`` the writers insert in the
orders' transaction: the Rust SQLite writer itself, the PostgreSQL store by COPY or from
``OrderRows.decision_tuples()`` (``INSERT_PLACED_SQL``). The review columns are written here: a
reviewer's approval or rejection, or the expiry of the review hold, staged in the batch of the
order's status change (the part ``REVIEWS``), with the approved order's new payment deadline.

Reads: one decision (``DECISION_SQL``), the open review queue newest first (``OPEN_SQL``), and
the labels for training with the features they were decided on: of reviewed decisions
(``LABELS_SQL``: rejected, or reported as fraud, 1; approved 0) and of the sampled allowed ones
(``SAMPLED_LABELS_SQL``: reported as fraud 1, old enough without a report 0). The ``features``
column is kept for decisions held for review and sampled allowed ones only. JSON columns are
JSON text in both stores (nothing queries into them). Times are ms since the Unix epoch (UTC).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from pyorder._core import PLACED_DECISION_COLUMNS, RISK_DECIDED_BY_CODES
from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.records import Decision, Label, Reason, ReviewOutcome

PLACED_COLUMNS: tuple[str, ...] = tuple(PLACED_DECISION_COLUMNS)
"""The columns the writers insert, in ``OrderRows.decision_tuples()`` order: the core's list
(``core_rs/src/storage/mod.rs``), written once."""
COLUMNS = ", ".join((*PLACED_COLUMNS, "review", "reviewer", "reviewed_ms"))

_PLACED_TYPES = ("bigint", "text", "text", "bigint", "text", "int", "int") + ("text",) * 5
INSERT_PLACED_SQL = (
    f"INSERT INTO risk_decisions ({', '.join(PLACED_COLUMNS)})"
    " SELECT id, buyer, merchant, at_ms, outcome, three_ds <> 0, score, model, decided_by,"
    " fired, reasons, features"
    f" FROM unnest({', '.join(f'${n}::{t}[]' for n, t in enumerate(_PLACED_TYPES, 1))})"
    f" AS d({', '.join(PLACED_COLUMNS)})"
)
"""PostgreSQL: a batch's decisions in one statement, one array per column (``three_ds`` 0/1 or
a bool, the JSON columns as text)."""

DECISION_SQL = f"SELECT {COLUMNS} FROM risk_decisions WHERE id = {{0}}"
"""One decision of its own row; format with the placeholder of its id."""
ORDER_RISK_SQL = (
    "SELECT o.id, o.buyer, l.merchant, o.created_ms, o.risk, o.risk_packed FROM orders o"
    " JOIN order_lines l ON l.order_id = o.id AND l.line_no = 0"
    " WHERE o.id = {0} AND (o.risk_packed IS NOT NULL OR o.risk IS NOT NULL)"
)
"""The decision an allowed order keeps in its row, with what it shares with the order (its id,
buyer, first line's merchant, time); format with the placeholder of the order's id."""
OPEN_SQL = (
    f"SELECT {', '.join(f'd.{c.strip()}' for c in COLUMNS.split(','))} FROM risk_decisions d"
    " JOIN orders o ON o.id = d.id"
    " WHERE d.outcome = 'review' AND d.review IS NULL AND o.status = 'in_review'"
    " AND d.id < {0} AND ({1} = '' OR d.merchant = {1}) ORDER BY d.id DESC LIMIT {2}"
)
"""The open reviews (through the partial index ``risk_decisions_open``) of orders still in
review (a buyer may have cancelled one), newest first, below an id, of one merchant ('': every
merchant's); format with the placeholders of (before_id, merchant, limit)."""
LABELS_SQL = (
    "SELECT d.id, CASE WHEN d.review = 'rejected' OR f.order_id IS NOT NULL THEN 1 ELSE 0 END,"
    " d.features FROM risk_decisions d LEFT JOIN fraud_reports f ON f.order_id = d.id"
    " WHERE d.review IN ('approved', 'rejected') AND d.id > {0} ORDER BY d.id LIMIT {1}"
)
"""(decision id, label, features) of reviewed decisions, by id after a cursor (through the
partial index ``risk_decisions_reviewed``): 1 when rejected, or approved and then reported as
fraud (``pyorder.risk.fraud``); format with the placeholders of (after_id, limit);
``label_from_row`` reads a row."""
_CHARGED = "EXISTS (SELECT 1 FROM payments p WHERE p.order_id = d.id AND p.charged > 0)"
_UNREPORTED = "NOT EXISTS (SELECT 1 FROM fraud_reports f WHERE f.order_id = d.id)"
SAMPLED_LABELS_SQL = (
    "SELECT d.id, CASE WHEN f.order_id IS NULL THEN 0 ELSE 1 END, d.features"
    " FROM risk_decisions d LEFT JOIN fraud_reports f ON f.order_id = d.id"
    " WHERE d.outcome = 'allow' AND d.features IS NOT NULL AND d.id > {0}"
    f" AND (f.order_id IS NOT NULL OR (d.at_ms <= {{2}} AND {_CHARGED}))"
    " ORDER BY d.id LIMIT {1}"
)
"""(decision id, label, features) of the allowed orders sampled with their features (a scan:
an export is an offline job), by id after a cursor: 1 when reported as fraud,
0 when charged (a chargeback was possible) and decided at or before a time (old enough that
one would have come) without a report; the others are left out. Format with the placeholders
of (after_id, limit, mature_before_ms)."""
UNLABELLED_SQL = (
    "SELECT"
    " COALESCE(SUM(CASE WHEN charged = 1 AND at_ms > {0} THEN 1 ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN charged = 1 THEN 0 ELSE 1 END), 0)"
    f" FROM (SELECT d.at_ms, CASE WHEN {_CHARGED} THEN 1 ELSE 0 END AS charged"
    " FROM risk_decisions d WHERE d.outcome = 'allow' AND d.features IS NOT NULL"
    f" AND {_UNREPORTED}) AS s"
)
"""The sampled allowed decisions without a report that ``SAMPLED_LABELS_SQL`` leaves out:
(charged and too young, decided after the placeholder's time; never charged: nothing to
charge back, neither fraud nor honest for certain)."""
REPORTS_WITHOUT_FEATURES_SQL = (
    "SELECT count(*) FROM fraud_reports f WHERE NOT EXISTS"
    " (SELECT 1 FROM risk_decisions d WHERE d.id = f.order_id AND d.features IS NOT NULL)"
)
"""Fraud reports of orders whose decision kept no features (allowed and not sampled): no
training row."""
EXPIRE_OPEN_SQL = (
    "UPDATE risk_decisions SET review = 'expired', reviewer = 'system', reviewed_ms = $2"
    " WHERE id = ANY($1::bigint[]) AND outcome = 'review' AND review IS NULL"
)
"""PostgreSQL: the open reviews of the orders $1 a take-over just expired (a dead cluster
node's, ``pyorder.storage.stock_leases``), expired at $2 (ms)."""

_REVIEW_SQL = (
    "UPDATE risk_decisions SET review = {0}, reviewer = {1}, reviewed_ms = {2}"
    " WHERE id = {3} AND outcome = 'review' AND review IS NULL"
)
# The approved order's payment deadline: its status change (written before the parts) has
# made it pending_payment in the same transaction.
_DEADLINE_SQL = (
    "UPDATE orders SET deadline_ms = {0}, updated_ms = {1}"
    " WHERE id = {2} AND status = 'pending_payment'"
)
_REVIEW = Statement(
    _REVIEW_SQL.format("?", "?", "?", "?"), _REVIEW_SQL.format("$1", "$2", "$3", "$4")
)
_DEADLINE = Statement(_DEADLINE_SQL.format("?", "?", "?"), _DEADLINE_SQL.format("$1", "$2", "$3"))


@dataclass(frozen=True, slots=True)
class StagedReview:
    """A review staged for the decision of order ``order_id``."""

    order_id: int
    outcome: ReviewOutcome
    reviewer: str
    at_ms: int
    deadline_ms: int | None = None
    """An approved order's new payment deadline (ms)."""


@dataclass
class ReviewRows:
    """The reviews staged in one batch, by order id."""

    reviews: dict[int, StagedReview] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.reviews)

    def add(self, review: StagedReview) -> None:
        self.reviews[review.order_id] = review

    def writes(self) -> Iterator[Write]:
        if not self.reviews:
            return
        staged = self.reviews.values()
        yield (
            _REVIEW,
            [(r.outcome.value, r.reviewer, r.at_ms, r.order_id) for r in staged],
        )
        deadlines = [
            (r.deadline_ms, r.at_ms, r.order_id) for r in staged if r.deadline_ms is not None
        ]
        if deadlines:
            yield _DEADLINE, deadlines


def _nothing(rows: Sequence[Sequence[Row]]) -> None:
    """The reviews part loads nothing at start (its reads are made on demand)."""


REVIEWS: PartKind[ReviewRows, None] = PartKind("reviews", ReviewRows, (), _nothing)
"""The reviews' part (``pyorder.parts``): written after the status changes of its batch."""


def _features(value: Any) -> dict[str, float] | None:
    """A decision's ``features`` column (a JSON object, or NULL)."""
    if value is None:
        return None
    found = orjson.loads(value)
    if not isinstance(found, dict):
        raise ValueError(f"stored risk decision features are not a JSON object: {value!r:.80}")
    return {str(k): float(v) for k, v in found.items()}


def label_from_row(r: Row) -> Label:
    """A label from a row of ``LABELS_SQL``."""
    return Label(int(r[0]), int(r[1]), _features(r[2]))


def _json_list(value: Any) -> list[Any]:
    found = orjson.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(found, list):
        raise ValueError(f"stored risk decision column is not a JSON array: {value!r:.80}")
    return found


def decision_from_row(r: Row) -> Decision:
    """A decision from a row in ``COLUMNS`` order."""
    reasons = tuple(
        Reason(
            str(x["feature"]),
            None if x.get("value") is None else float(x["value"]),
            float(x["contribution"]),
        )
        for x in _json_list(r[10])
    )
    return Decision(
        id=int(r[0]),
        buyer=str(r[1]),
        merchant=str(r[2]),
        at_ms=int(r[3]),
        outcome=str(r[4]),
        three_ds=bool(r[5]),
        score=None if r[6] is None else int(r[6]),
        model=None if r[7] is None else str(r[7]),
        decided_by=str(r[8]),
        fired=tuple(str(x) for x in _json_list(r[9])),
        reasons=reasons,
        features=_features(r[11]),
        review=None if r[12] is None else ReviewOutcome(r[12]),
        reviewer=None if r[13] is None else str(r[13]),
        reviewed_ms=None if r[14] is None else int(r[14]),
    )


def unpack_order_risk(packed: bytes) -> list[Any]:
    """An ``orders.risk_packed`` value (schema version 21: MessagePack,
    ``core_rs/src/risk/packed.rs``) as schema 19's ``orders.risk`` JSON array: ``[score, model,
    decided_by, three_ds, [fired...], [[feature, value, contribution]...]]``, the model's version
    as its hex digits, what decided as its text, a reason's feature by name and its contribution
    from millionths. A code or a feature index this build does not know (written by a newer
    one: the catalogue is only appended to) reads as ``code_<n>`` or ``feature_<index>``."""
    risk = msgspec.msgpack.decode(packed)
    if not isinstance(risk, list) or len(risk) != 6:
        raise ValueError(f"stored order risk is not a packed decision: {packed!r:.80}")
    score, model, decided_by, three_ds, fired, reasons = risk
    return [
        score,
        model.hex() if isinstance(model, bytes) else model,
        _known(RISK_DECIDED_BY_CODES, decided_by, "code")
        if isinstance(decided_by, int)
        else decided_by,
        three_ds,
        fired,
        [
            [_known(FEATURE_NAMES, f, "feature"), v, None if c is None else c / 1e6]
            for f, v, c in reasons
        ],
    ]


def _known(names: Sequence[str], index: int, kind: str) -> str:
    return names[index] if 0 <= index < len(names) else f"{kind}_{index}"


def decision_from_order(r: Row) -> Decision:
    """An allowed order's decision from a row of ``ORDER_RISK_SQL``: its ``risk_packed`` column
    (``unpack_order_risk``), or where a build before schema version 21 wrote it its ``risk``
    column, JSON text of ``[score, model, decided_by, three_ds, [fired...], [[feature, value,
    contribution]...]]``."""
    risk = _json_list(r[4]) if r[5] is None else unpack_order_risk(bytes(r[5]))
    if len(risk) != 6:  # the JSON's (the packed one is checked unpacking)
        raise ValueError(f"stored order risk is not a decision: {r[4]!r:.80}")
    score, model, decided_by, three_ds, fired, reasons = risk
    return Decision(
        id=int(r[0]),
        buyer=str(r[1]),
        merchant=str(r[2]),
        at_ms=int(r[3]),
        outcome="allow",
        three_ds=bool(three_ds),
        score=None if score is None else int(score),
        model=None if model is None else str(model),
        decided_by=str(decided_by),
        fired=tuple(str(x) for x in fired),
        reasons=tuple(
            Reason(str(f), None if v is None else float(v), float(c)) for f, v, c in reasons
        ),
    )


def decision_row(d: Decision) -> tuple[Any, ...]:
    """A decision's ``PLACED_COLUMNS`` as the Rust writers insert them into SQLite (``three_ds``
    0/1, the JSON columns as text): for tests and tools that write decisions without the order
    book."""
    reasons = [
        {"feature": x.feature, "value": x.value, "contribution": x.contribution} for x in d.reasons
    ]
    return (
        d.id,
        d.buyer,
        d.merchant,
        d.at_ms,
        d.outcome,
        int(d.three_ds),
        d.score,
        d.model,
        d.decided_by,
        orjson.dumps(list(d.fired)).decode(),
        orjson.dumps(reasons).decode(),
        None if d.features is None else orjson.dumps(dict(d.features)).decode(),
    )
