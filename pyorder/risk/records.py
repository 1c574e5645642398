"""The risk rules, list entries, thresholds and audit entries as stored and managed over the
API (``pyorder.risk.management``, ``docs/risk.md``, "Managing rules and lists"). Times are ms
since the Unix epoch (UTC)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from pyorder.risk.policy import ListKind
from pyorder.risk.rules import Action

PLATFORM = "platform"
"""The owner of the admins' rules and lists (a merchant's is its key, ``merchant:<id>``)."""
RULE_PREFIX = "rule_"
"""A rule's id as listed and as decisions name it: ``rule_<n>``."""


@dataclass(frozen=True, slots=True)
class StoredRule:
    id: int
    owner: str
    """``platform`` or the merchant's key."""
    action: Action
    condition: str
    description: str
    deleted: bool
    """Deleted rules stay stored (their ids are never reused) but no longer apply."""
    created_ms: int
    updated_ms: int

    @property
    def name(self) -> str:
        """The id as the API lists it and decisions name it (``rule_<n>``)."""
        return f"{RULE_PREFIX}{self.id}"


@dataclass(frozen=True, slots=True)
class ListEntry:
    list: str
    """``allow`` or ``block``."""
    kind: ListKind
    value: str
    owner: str
    added_ms: int


@dataclass(frozen=True, slots=True)
class Settings:
    """The platform-wide thresholds (scores 0-99) and the version of the whole configuration,
    raised by every change (what cluster nodes compare to know they must read it again)."""

    block: int = 75
    review: int = 65
    version: int = 0
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change: who (the principal's key), when, what (``rule.created``, ``rule.updated``,
    ``rule.deleted``, ``list.added``, ``list.removed``, ``thresholds.changed``), of what
    (``subject``: a rule's id, ``allow:ip:203.0.113.7``, ``thresholds``), whose (``owner``),
    and the thing before and after as JSON (null: it did not exist)."""

    id: int
    """Assigned by the store in insertion order (0 until written)."""
    at_ms: int
    principal: str
    owner: str
    action: str
    subject: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class RiskState:
    """Everything the live policy is built from, as stored."""

    rules: tuple[StoredRule, ...] = ()
    entries: tuple[ListEntry, ...] = ()
    settings: Settings = field(default_factory=Settings)


class ReviewOutcome(StrEnum):
    """How the review of a held order ended (``risk_decisions.review``)."""

    APPROVED = "approved"
    """A reviewer let it through: it awaits payment."""
    REJECTED = "rejected"
    """A reviewer refused it: it is cancelled, its units released."""
    EXPIRED = "expired"
    """Nobody decided within the review hold: the order expired, its units released."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One of a decision's top reasons: a feature, its value (None: missing) and its
    contribution to the score's log-odds (positive pushes towards fraud)."""

    feature: str
    value: float | None
    contribution: float


@dataclass(frozen=True, slots=True)
class Decision:
    """Risk control's decision on an order at intake, as stored (a ``risk_decisions`` row when it
    held or blocked the order, with its review once there is one; an allowed order's
    ``orders.risk_packed``: ``pyorder.risk.decisions``). Times are ms since the Unix epoch (UTC)."""

    id: int
    """The order's id (a blocked attempt's: the id it was given; no order has it)."""
    buyer: str
    merchant: str
    """The key (``merchant:<subject>``) of the merchant of the order's first line: whose rules
    applied, and who reviews it."""
    at_ms: int
    outcome: str
    """``allow``, ``review`` or ``block``."""
    three_ds: bool
    """3-D Secure is requested at payment."""
    score: int | None
    """0-99; None when the order was not scored."""
    model: str | None
    """The model's version."""
    decided_by: str
    """A rule id, ``list:<list>:<kind>``, ``score`` or ``default``."""
    fired: tuple[str, ...]
    """The ids of the rules that fired."""
    reasons: tuple[Reason, ...]
    """Up to three, the strongest first."""
    review: ReviewOutcome | None = None
    reviewer: str | None = None
    """The reviewer's principal key (``merchant:<id>``, ``admin:<id>``), ``system`` for an
    expiry."""
    reviewed_ms: int | None = None
    features: Mapping[str, float] | None = None
    """The features the order was decided on (by name; a missing one absent), kept when it
    was held for review: what its reviewer reads beyond the reasons, and a label's row once
    reviewed; None for the other decisions."""

    @property
    def open(self) -> bool:
        """Held for review and not decided yet."""
        return self.outcome == "review" and self.review is None


class Label(NamedTuple):
    """A reviewed decision as a training example: its order's id, the label (1: the reviewer
    rejected the order, 0: approved it) and the features the order was decided on (by name;
    a missing one absent), None for a decision stored before they were kept (schema version
    18)."""

    id: int
    label: int
    features: Mapping[str, float] | None


class FraudSource(StrEnum):
    CHARGEBACK = "chargeback"
    """The card's issuer took the payment back as fraudulent."""
    MERCHANT_REPORT = "merchant_report"
    """The merchant (or the platform) found the order fraudulent without a chargeback
    (promo abuse, scalping, a confirmed stolen account)."""


@dataclass(frozen=True, slots=True)
class FraudReport:
    order_id: int
    merchant: str
    """The merchant of the order's first line (whose decision it was)."""
    source: FraudSource
    reporter: str
    """The principal who reported it (``merchant:<id>``, ``admin:<id>``)."""
    reported_ms: int
    note: str
