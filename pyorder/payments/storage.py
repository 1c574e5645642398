"""The payments capability's share of the unit of work (``pyorder.kernel.unit``): its staged
rows, its parts of the snapshot, its row codec and its SQL for both stores.

Two parts, because the batch has always written the calls owed to providers and the webhook
events seen (the shared ``pyorder.storage.outbox`` part, also staged by logistics and returns)
between a payment's rows and its refunds' rows, and that order is kept
(``pyorder.parts``): ``PAYMENTS`` (tables ``payments`` and ``payment_attempts``, schema version
3; the attempts' ``three_ds`` of version 15), then the outbox part, then ``REFUNDS`` (table ``refunds``, schema version 5). Every row is
written whole (upserts): the last one staged in a batch wins. Money is minor units, times ms
since the Unix epoch (UTC).
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.payments.model import (
    Attempt,
    AttemptStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from pyorder.storage.codec import upsert_sql

PAYMENT_COLUMNS = (
    "order_id, buyer, currency, amount, method, status, authorized, charged, refunded,"
    " attempts, paid_attempt, flag, created_ms, updated_ms"
)
ATTEMPT_COLUMNS = (
    "order_id, number, provider, method, payment_method, idempotency_key, provider_payment_id,"
    " status, amount, currency, amount_received, refund_id, refund_status, amount_refunded,"
    " error, created_ms, updated_ms, three_ds, risk"
)
PAYMENTS_SQL = f"SELECT {PAYMENT_COLUMNS} FROM payments ORDER BY order_id"
ATTEMPTS_SQL = f"SELECT {ATTEMPT_COLUMNS} FROM payment_attempts ORDER BY order_id, number"


def payment_row(p: Payment) -> tuple[Any, ...]:
    return (
        p.order_id,
        p.buyer,
        p.currency,
        p.amount,
        p.method,
        p.status.value,
        p.authorized,
        p.charged,
        p.refunded,
        p.attempts,
        p.paid_attempt,
        p.flag,
        p.created_ms,
        p.updated_ms,
    )


def payment_from_row(r: Row) -> Payment:
    return Payment(
        order_id=int(r[0]),
        buyer=r[1],
        currency=r[2],
        amount=int(r[3]),
        method=r[4],
        status=PaymentStatus(r[5]),
        authorized=int(r[6]),
        charged=int(r[7]),
        refunded=int(r[8]),
        attempts=int(r[9]),
        paid_attempt=int(r[10]),
        flag=r[11],
        created_ms=int(r[12]),
        updated_ms=int(r[13]),
    )


def attempt_row(a: Attempt) -> tuple[Any, ...]:
    return (
        a.order_id,
        a.number,
        a.provider,
        a.method,
        a.payment_method,
        a.idempotency_key,
        a.provider_payment_id,
        a.status.value,
        a.amount,
        a.currency,
        a.amount_received,
        a.refund_id,
        a.refund_status.value,
        a.amount_refunded,
        a.error,
        a.created_ms,
        a.updated_ms,
        a.three_ds,
        a.risk,
    )


def attempt_from_row(r: Row) -> Attempt:
    return Attempt(
        order_id=int(r[0]),
        number=int(r[1]),
        provider=r[2],
        method=r[3],
        payment_method=r[4],
        idempotency_key=r[5],
        provider_payment_id=r[6],
        status=AttemptStatus(r[7]),
        amount=int(r[8]),
        currency=r[9],
        amount_received=int(r[10]),
        refund_id=r[11],
        refund_status=RefundStatus(r[12]),
        amount_refunded=int(r[13]),
        error=r[14],
        created_ms=int(r[15]),
        updated_ms=int(r[16]),
        three_ds=bool(r[17]),
        risk=r[18],
    )


REFUND_COLUMNS = (
    "order_id, number, attempt, provider, amount, currency, status, reason, lines,"
    " idempotency_key, provider_refund_id, requested_by, error, created_ms, updated_ms,"
    " settled_ms"
)
REFUNDS_SQL = f"SELECT {REFUND_COLUMNS} FROM refunds ORDER BY order_id, number"


def refund_row(r: Refund) -> tuple[Any, ...]:
    return (
        r.order_id,
        r.number,
        r.attempt,
        r.provider,
        r.amount,
        r.currency,
        r.status.value,
        r.reason,
        orjson.dumps([list(line) for line in r.lines]).decode(),
        r.idempotency_key,
        r.provider_refund_id,
        r.requested_by,
        r.error,
        r.created_ms,
        r.updated_ms,
        r.settled_ms,
    )


def refund_from_row(r: Row) -> Refund:
    return Refund(
        order_id=int(r[0]),
        number=int(r[1]),
        attempt=int(r[2]),
        provider=r[3],
        amount=int(r[4]),
        currency=r[5],
        status=RefundStatus(r[6]),
        reason=r[7],
        lines=tuple((int(a), int(b)) for a, b in orjson.loads(r[8])),
        idempotency_key=r[9],
        provider_refund_id=r[10],
        requested_by=r[11],
        error=r[12],
        created_ms=int(r[13]),
        updated_ms=int(r[14]),
        settled_ms=int(r[15]),
    )


_UPSERT_PAYMENT = Statement(
    upsert_sql("payments", PAYMENT_COLUMNS, "order_id", "?"),
    upsert_sql("payments", PAYMENT_COLUMNS, "order_id", "$"),
)
_UPSERT_ATTEMPT = Statement(
    upsert_sql("payment_attempts", ATTEMPT_COLUMNS, "order_id, number", "?"),
    upsert_sql("payment_attempts", ATTEMPT_COLUMNS, "order_id, number", "$"),
)
_UPSERT_REFUND = Statement(
    upsert_sql("refunds", REFUND_COLUMNS, "order_id, number", "?"),
    upsert_sql("refunds", REFUND_COLUMNS, "order_id, number", "$"),
)


@dataclass(slots=True)
class StagedPayments:
    """The payments and attempts rows of one batch."""

    payments: dict[int, Payment] = field(default_factory=dict)
    """Order id -> the payment's row as it is now."""
    attempts: dict[tuple[int, int], Attempt] = field(default_factory=dict)
    """(order id, attempt number) -> the attempt's row as it is now."""

    def __len__(self) -> int:
        return len(self.payments) + len(self.attempts)

    def writes(self) -> Iterator[Write]:
        """Payments, then their attempts: the order they always had."""
        if self.payments:
            yield _UPSERT_PAYMENT, list(map(payment_row, self.payments.values()))
        if self.attempts:
            yield _UPSERT_ATTEMPT, list(map(attempt_row, self.attempts.values()))


@dataclass(frozen=True, slots=True)
class StoredPayments:
    """What a restart needs of payments: every payment and attempt."""

    payments: list[Payment] = field(default_factory=list)
    """By order id."""
    attempts: list[Attempt] = field(default_factory=list)
    """By order id, then attempt number."""


def _stored_payments(rows: Sequence[Sequence[Row]]) -> StoredPayments:
    payments, attempts = rows
    return StoredPayments(
        [payment_from_row(r) for r in payments], [attempt_from_row(r) for r in attempts]
    )


def _payments_of(stored: StoredPayments, keep: Callable[[int], bool]) -> StoredPayments:
    return StoredPayments(
        [p for p in stored.payments if keep(p.order_id)],
        [a for a in stored.attempts if keep(a.order_id)],
    )


PAYMENTS = PartKind(
    "payments", StagedPayments, (PAYMENTS_SQL, ATTEMPTS_SQL), _stored_payments, _payments_of
)
"""The payments part: registered in ``pyorder.parts``, first of the parts."""


@dataclass(slots=True)
class StagedRefunds:
    """The refunds rows of one batch (``pyorder.payments.refunds``)."""

    refunds: dict[tuple[int, int], Refund] = field(default_factory=dict)
    """(order id, refund number) -> the refund's row as it is now."""

    def __len__(self) -> int:
        return len(self.refunds)

    def writes(self) -> Iterator[Write]:
        if self.refunds:
            yield _UPSERT_REFUND, list(map(refund_row, self.refunds.values()))


def _stored_refunds(rows: Sequence[Sequence[Row]]) -> list[Refund]:
    (refunds,) = rows
    return [refund_from_row(r) for r in refunds]


def _refunds_of(stored: list[Refund], keep: Callable[[int], bool]) -> list[Refund]:
    return [r for r in stored if keep(r.order_id)]


REFUNDS = PartKind("refunds", StagedRefunds, (REFUNDS_SQL,), _stored_refunds, _refunds_of)
"""The refunds part (snapshot: every refund, by order id then number): registered in
``pyorder.parts``, after the outbox part."""
