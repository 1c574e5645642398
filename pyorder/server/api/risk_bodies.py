"""Request and response bodies of the risk rules' routes (``pyorder.server.api.risk``): rules,
list entries, thresholds and the audit log, as msgspec Structs, and the converters from the
records (``pyorder.risk.records``)."""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from pyorder.kernel.clock import iso_ms as iso
from pyorder.risk import management
from pyorder.risk.policy import ListKind
from pyorder.risk.records import AuditEntry, ListEntry, Settings, StoredRule
from pyorder.risk.rules import Action
from pyorder.server.bodies import NO_NUL, whole

LIST_VALUE = management.LIST_VALUE
"""A listed value (an id, an IP, a hash): also a path segment of its DELETE, so no slash."""
Score = Annotated[int, Meta(ge=0, le=100)]

# --- requests (unknown fields are an error) -------------------------------------------------


class RiskRuleIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A rule: when its condition holds for an order, its action applies (docs/risk.md)."""

    action: Action
    condition: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=management.MAX_CONDITION,
            pattern=NO_NUL,
            description="comparisons of features and `score` (0-99), and/or/not, + - * /,"
            " missing(feature); e.g. `device_buyers_24h >= 5 and agent_class == 3`."
            " 422 invalid_rule otherwise",
        ),
    ]
    description: Annotated[str, Meta(max_length=management.MAX_DESCRIPTION, pattern=NO_NUL)] = ""


class RiskListEntryIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    list: Literal["allow", "block"]
    kind: ListKind
    value: Annotated[str, Meta(pattern=whole(LIST_VALUE))]


class RiskThresholdsIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Scores at or above which an order is blocked, or held for review (review <= block)."""

    block: Score
    review: Score


# --- responses -----------------------------------------------------------------------------


class RiskRuleOut(msgspec.Struct):
    id: str
    """``rule_<n>``: also how decisions name the rule."""
    owner: str
    """``platform`` (an admin's rule: every order) or the merchant's key (its orders only)."""
    action: Action
    condition: str
    description: str
    created_at: str
    updated_at: str


class RiskRuleList(msgspec.Struct):
    rules: list[RiskRuleOut]


class RiskListEntryOut(msgspec.Struct):
    list: str
    kind: ListKind
    value: str
    owner: str
    added_at: str


class RiskListEntryList(msgspec.Struct):
    entries: list[RiskListEntryOut]


class RiskThresholdsOut(msgspec.Struct):
    block: int
    review: int
    version: int
    """The risk configuration's version: raised by every change of rules, lists or these."""
    updated_at: str | None
    """When the configuration last changed; null if never."""


class RiskAuditEntryOut(msgspec.Struct):
    id: int
    at: str
    principal: str
    """Who changed it: ``<role>:<subject>`` of the token."""
    owner: str
    action: str
    """rule.created, rule.updated, rule.deleted, list.added, list.removed, thresholds.changed"""
    subject: str
    """The rule's id, ``<list>:<kind>:<value>``, or ``thresholds``."""
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class RiskAuditList(msgspec.Struct):
    entries: list[RiskAuditEntryOut]
    next_cursor: str | None
    """Pass as ``before`` for the next (older) page; null on the last page."""


# --- conversions ---------------------------------------------------------------------------


def rule_out(r: StoredRule) -> RiskRuleOut:
    return RiskRuleOut(
        id=r.name,
        owner=r.owner,
        action=r.action,
        condition=r.condition,
        description=r.description,
        created_at=iso(r.created_ms),
        updated_at=iso(r.updated_ms),
    )


def entry_out(e: ListEntry) -> RiskListEntryOut:
    return RiskListEntryOut(e.list, e.kind, e.value, e.owner, iso(e.added_ms))


def thresholds_out(s: Settings) -> RiskThresholdsOut:
    return RiskThresholdsOut(
        s.block, s.review, s.version, iso(s.updated_ms) if s.updated_ms else None
    )


def _decoded(text: str | None) -> dict[str, Any] | None:
    return None if text is None else msgspec.json.decode(text, type=dict[str, Any])


def audit_out(a: AuditEntry) -> RiskAuditEntryOut:
    return RiskAuditEntryOut(
        id=a.id,
        at=iso(a.at_ms),
        principal=a.principal,
        owner=a.owner,
        action=a.action,
        subject=a.subject,
        before=_decoded(a.before),
        after=_decoded(a.after),
    )
