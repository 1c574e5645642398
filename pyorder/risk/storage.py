"""The risk rules' share of the unit of work (``pyorder.kernel.unit``): rules, list entries,
the thresholds row and the audit log (tables of schema version 13), their SQL for both stores,
and the reads of the audit log and of the configuration's version.

A change stages its rows and its audit entry in the same batch, so both commit in one
transaction or neither does. The part loads the rules (deleted ones too: their ids are never
reused), the list entries and the thresholds at start; the audit log is read on demand
(``AUDIT_SQL``), newest first. Times are ms since the Unix epoch (UTC).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.risk.policy import ListKind
from pyorder.risk.records import AuditEntry, ListEntry, RiskState, Settings, StoredRule
from pyorder.risk.rules import Action
from pyorder.storage.codec import upsert_sql

RULE_COLUMNS = "id, owner, action, condition_text, description, deleted, created_ms, updated_ms"
ENTRY_COLUMNS = "list_name, kind, value, owner, added_ms"
SETTINGS_COLUMNS = "id, block, review, version, updated_ms"
AUDIT_COLUMNS = "id, at_ms, principal, owner, action, subject, before_json, after_json"
_NEW_AUDIT_COLUMNS = AUDIT_COLUMNS.removeprefix("id, ")

_UPSERT_RULE = Statement(
    upsert_sql("risk_rules", RULE_COLUMNS, "id", "?"),
    upsert_sql("risk_rules", RULE_COLUMNS, "id", "$"),
)
_UPSERT_ENTRY = Statement(
    upsert_sql("risk_list_entries", ENTRY_COLUMNS, "list_name, kind, value", "?"),
    upsert_sql("risk_list_entries", ENTRY_COLUMNS, "list_name, kind, value", "$"),
)
_DELETE_ENTRY = Statement(
    "DELETE FROM risk_list_entries WHERE list_name = ? AND kind = ? AND value = ?",
    "DELETE FROM risk_list_entries WHERE list_name = $1 AND kind = $2 AND value = $3",
)
_UPSERT_SETTINGS = Statement(
    upsert_sql("risk_settings", SETTINGS_COLUMNS, "id", "?"),
    upsert_sql("risk_settings", SETTINGS_COLUMNS, "id", "$"),
)
_INSERT_AUDIT = Statement(
    f"INSERT INTO risk_audit ({_NEW_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
    f"INSERT INTO risk_audit ({_NEW_AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
)

RULES_SQL = f"SELECT {RULE_COLUMNS} FROM risk_rules ORDER BY id"
ENTRIES_SQL = f"SELECT {ENTRY_COLUMNS} FROM risk_list_entries ORDER BY list_name, kind, value"
SETTINGS_SQL = f"SELECT {SETTINGS_COLUMNS} FROM risk_settings WHERE id = 1"
VERSION_SQL = "SELECT version FROM risk_settings WHERE id = 1"
AUDIT_SQL = (
    f"SELECT {AUDIT_COLUMNS} FROM risk_audit WHERE id < {{0}} AND ({{1}} = '' OR owner = {{1}})"
    " ORDER BY id DESC LIMIT {2}"
)
"""Newest first, below an id, of one owner ('': every owner); format with the placeholders
of (before_id, owner, limit)."""


@dataclass
class RiskRows:
    """The risk rows staged in one batch: each rule's and each list entry's latest state
    (an entry None: removed), the thresholds row if changed, and the audit entries."""

    rules: dict[int, StoredRule] = field(default_factory=dict)
    entries: dict[tuple[str, str, str], ListEntry | None] = field(default_factory=dict)
    settings: Settings | None = None
    audit: list[AuditEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rules) + len(self.entries) + (self.settings is not None) + len(self.audit)

    def writes(self) -> Iterator[Write]:
        if self.rules:
            yield _UPSERT_RULE, [rule_row(r) for r in self.rules.values()]
        removed = [key for key, e in self.entries.items() if e is None]
        if removed:
            yield _DELETE_ENTRY, removed
        added = [e for e in self.entries.values() if e is not None]
        if added:
            yield (
                _UPSERT_ENTRY,
                [(e.list, e.kind.value, e.value, e.owner, e.added_ms) for e in added],
            )
        if self.settings is not None:
            s = self.settings
            yield _UPSERT_SETTINGS, [(1, s.block, s.review, s.version, s.updated_ms)]
        if self.audit:
            yield _INSERT_AUDIT, [audit_row(a) for a in self.audit]


def rule_row(r: StoredRule) -> tuple[Any, ...]:
    return (
        r.id,
        r.owner,
        r.action.value,
        r.condition,
        r.description,
        int(r.deleted),
        r.created_ms,
        r.updated_ms,
    )


def rule_from_row(r: Row) -> StoredRule:
    return StoredRule(
        id=int(r[0]),
        owner=str(r[1]),
        action=Action(r[2]),
        condition=str(r[3]),
        description=str(r[4]),
        deleted=bool(r[5]),
        created_ms=int(r[6]),
        updated_ms=int(r[7]),
    )


def entry_from_row(r: Row) -> ListEntry:
    return ListEntry(str(r[0]), ListKind(r[1]), str(r[2]), str(r[3]), int(r[4]))


def settings_from_row(r: Row) -> Settings:
    return Settings(int(r[1]), int(r[2]), int(r[3]), int(r[4]))


def audit_row(a: AuditEntry) -> tuple[Any, ...]:
    return (a.at_ms, a.principal, a.owner, a.action, a.subject, a.before, a.after)


def audit_from_row(r: Row) -> AuditEntry:
    return AuditEntry(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), r[6], r[7])


def state_from_rows(rows: Sequence[Sequence[Row]]) -> RiskState:
    """The configuration from the rows of ``RISK.loads`` (rules, entries, settings)."""
    rules, entries, settings = rows
    return RiskState(
        tuple(rule_from_row(r) for r in rules),
        tuple(entry_from_row(r) for r in entries),
        settings_from_row(settings[0]) if settings else Settings(),
    )


RISK: PartKind[RiskRows, RiskState] = PartKind(
    name="risk",
    staged=RiskRows,
    loads=(RULES_SQL, ENTRIES_SQL, SETTINGS_SQL),
    snapshot=state_from_rows,
)
"""The risk rules' part: kept whole on every cluster node (it holds no order's state)."""
