"""Risk rules, allow/block lists and thresholds managed at run time (``docs/risk.md``,
"Managing rules and lists"), and the live ``Policy`` built from them.

Who may do what: an admin manages the platform's rules (and may read, change or delete any
merchant's), the allow/block lists and the thresholds; a merchant manages its own rules only
(owner: its key, ``merchant:<id>``), applied to its own orders, and sees nothing of another
merchant's (404). Lists and thresholds are platform-wide: admins only. Buyers: nothing.

A change is validated (a condition must compile over the features, ``compile_condition``, through
``policy.cached_condition``),
staged with its audit entry in the intake's batch (``pyorder.risk.storage``: one transaction),
and swaps the live policy at once: a new immutable ``Policy`` with the current rules, lists
and thresholds; a decision in progress keeps the one it started with. The caller answers once
the batch is durable; a failed commit rebuilds the platform, which loads this again from the
store (``load``). Times are ms since the Unix epoch (UTC).
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import msgspec

from pyorder.auth import Principal, Role
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import Conflict, InvalidInput, NotFound
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.policy import ListKind, Merchant, Policy, Thresholds, cached_condition
from pyorder.risk.records import PLATFORM, AuditEntry, ListEntry, RiskState, Settings, StoredRule
from pyorder.risk.rules import Action, Rule, RuleError
from pyorder.risk.storage import RISK
from pyorder.storage.base import Store

log = logging.getLogger(__name__)

MAX_RULES_PER_OWNER = 100
"""Live rules per owner (the platform, each merchant)."""
MAX_RULES = 2_000
"""Live rules in all: a decision passes over every rule to find its merchant's (measured: about
0.1 ms with 2,000 rules, 0.65 ms with 10,000)."""
MAX_LIST_ENTRIES = 100_000
"""List entries in all (each is held in memory, in the live policy)."""
LISTS = ("allow", "block")
LIST_VALUE = "[A-Za-z0-9_.:@+=~-]{1,256}"
"""A list value (the API takes it as a path segment to remove it)."""
MAX_CONDITION = 1000
"""Characters of a rule's condition."""
MAX_DESCRIPTION = 500
"""Characters of a rule's description."""
CONFIG_MARK = "config:"
"""The description of a rule made from the risk configuration file begins ``config:<id>``
(``pyorder.risk.config_file``); the API refuses it in other rules."""
CONFIG_APPLIER = Principal(Role.ADMIN, "config")
"""Who the audit log says made the configuration file's changes."""


class InvalidRule(InvalidInput):
    """A condition outside the rule language (the message says what and where)."""

    code = "invalid_rule"


class InvalidThresholds(InvalidInput):
    code = "invalid_thresholds"


class TooManyRules(Conflict):
    code = "too_many_rules"


class AlreadyListed(Conflict):
    code = "already_listed"


class TooManyListEntries(Conflict):
    code = "too_many_list_entries"


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def rule_json(r: StoredRule) -> dict[str, Any]:
    """A rule as its audit entries show it."""
    return {
        "id": r.name,
        "owner": r.owner,
        "action": r.action.value,
        "condition": r.condition,
        "description": r.description,
    }


class RiskControl:
    """The risk configuration of the platform and its live policy. ``intake`` stages the
    changes, ``store`` reads the audit log; ``names`` are the feature row's columns."""

    def __init__(self, intake: Intake, store: Store, names: Sequence[str] = FEATURE_NAMES) -> None:
        self._intake = intake
        self._store = store
        self._names = tuple(names)
        self._rules: dict[int, StoredRule] = {}
        """Every rule ever made, deleted ones included (ids are never reused)."""
        self._entries: dict[tuple[str, ListKind, str], ListEntry] = {}
        self._settings = Settings()
        self._policy = Policy(self._names)
        self.on_swap: list[Callable[[Policy], None]] = []
        """Called with each new live policy."""

    # --- state ---------------------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The live policy: what the next decision uses."""
        return self._policy

    @property
    def version(self) -> int:
        """The configuration's version, raised by every change (as staged)."""
        return self._settings.version

    def load(self, state: RiskState) -> None:
        """Hold exactly ``state`` (at start, after a failed commit, a cluster node's refresh)
        and make its policy live."""
        self._rules = {r.id: r for r in state.rules}
        self._entries = {(e.list, e.kind, e.value): e for e in state.entries}
        self._settings = state.settings
        self._swap()

    def _swap(self) -> None:
        rules: list[tuple[Rule, Merchant | None]] = []
        for r in sorted(self._rules.values(), key=lambda r: r.id):
            if r.deleted:
                continue
            try:  # stored by an older version whose features differ: skipped, not fatal
                cached_condition(r.condition, self._names)
            except RuleError as e:
                log.error("risk rule %s is not applied: %s", r.name, e)
                continue
            rules.append((Rule(r.name, r.action, r.condition), _merchant(r.owner)))
        lists: dict[str, dict[ListKind, set[str]]] = {name: {} for name in LISTS}
        for entry in self._entries.values():
            lists[entry.list].setdefault(entry.kind, set()).add(entry.value)
        s = self._settings
        self._policy = Policy(
            self._names,
            Thresholds(s.block, s.review),
            tuple(rules),
            {k: frozenset(v) for k, v in lists["allow"].items()},
            {k: frozenset(v) for k, v in lists["block"].items()},
        )
        for notify in self.on_swap:
            notify(self._policy)

    def _stage(
        self,
        who: Principal,
        at: int,
        owner: str,
        action: str,
        subject: str,
        before: Any,
        after: Any,
    ) -> None:
        """Stage the audit entry and the raised version, then make the new policy live."""
        self._settings = replace(self._settings, version=self._settings.version + 1, updated_ms=at)
        part = self._intake.batch.part(RISK)
        part.settings = self._settings
        part.audit.append(
            AuditEntry(0, at, who.key, owner, action, subject, _json(before), _json(after))
        )
        self._swap()

    # --- rules ---------------------------------------------------------------------------------

    def _check(self, condition: str, description: str, who: Principal) -> None:
        if description.startswith(CONFIG_MARK) and who != CONFIG_APPLIER:
            raise InvalidRule(
                f"a description beginning {CONFIG_MARK!r} marks the configuration file's rules",
                field="description",
            )
        try:
            cached_condition(condition, self._names)
        except RuleError as e:
            raise InvalidRule(str(e), field="condition") from e

    def rules(self, who: Principal) -> list[StoredRule]:
        """The rules the caller may see, by id: a merchant's own, every one for an admin."""
        who.require(Role.MERCHANT, Role.ADMIN)
        return [
            r
            for _, r in sorted(self._rules.items())
            if not r.deleted and (who.role is Role.ADMIN or r.owner == who.key)
        ]

    def rule(self, who: Principal, rule_id: int) -> StoredRule:
        """One rule of the caller's (admins: anyone's); NotFound otherwise, or once deleted."""
        who.require(Role.MERCHANT, Role.ADMIN)
        found = self._rules.get(rule_id)
        if (
            found is None
            or found.deleted
            or (who.role is not Role.ADMIN and found.owner != who.key)
        ):
            raise NotFound(f"risk rule rule_{rule_id} does not exist")
        return found

    def create_rule(
        self, who: Principal, action: Action, condition: str, description: str
    ) -> StoredRule:
        """A new rule of the caller's: the platform's for an admin, its own for a merchant."""
        who.require(Role.MERCHANT, Role.ADMIN)
        self._check(condition, description, who)
        owner = PLATFORM if who.role is Role.ADMIN else who.key
        live = [r.owner for r in self._rules.values() if not r.deleted]
        if live.count(owner) >= MAX_RULES_PER_OWNER:
            raise TooManyRules(
                f"an owner has at most {MAX_RULES_PER_OWNER} risk rules",
                limit=MAX_RULES_PER_OWNER,
            )
        if len(live) >= MAX_RULES:
            raise TooManyRules(
                f"the platform holds at most {MAX_RULES} risk rules", limit=MAX_RULES
            )
        at = now_ms()
        rule = StoredRule(
            max(self._rules, default=0) + 1, owner, action, condition, description, False, at, at
        )
        self._put(who, rule, "rule.created", None)
        return rule

    def update_rule(
        self, who: Principal, rule_id: int, action: Action, condition: str, description: str
    ) -> StoredRule:
        """Replace a rule's action, condition and description (its owner stays)."""
        before = self.rule(who, rule_id)
        self._check(condition, description, who)
        rule = replace(
            before, action=action, condition=condition, description=description, updated_ms=now_ms()
        )
        self._put(who, rule, "rule.updated", before)
        return rule

    def delete_rule(self, who: Principal, rule_id: int) -> StoredRule:
        """Delete a rule: it applies no more (kept stored, flagged, so its id is not reused)."""
        before = self.rule(who, rule_id)
        rule = replace(before, deleted=True, updated_ms=now_ms())
        self._put(who, rule, "rule.deleted", before)
        return rule

    def _put(
        self, who: Principal, rule: StoredRule, action: str, before: StoredRule | None
    ) -> None:
        self._rules[rule.id] = rule
        self._intake.batch.part(RISK).rules[rule.id] = rule
        after = None if rule.deleted else rule_json(rule)
        self._stage(
            who,
            rule.updated_ms,
            rule.owner,
            action,
            rule.name,
            None if before is None else rule_json(before),
            after,
        )

    # --- lists ---------------------------------------------------------------------------------

    def entries(self, who: Principal) -> list[ListEntry]:
        """Every list entry (admins), by list, kind and value."""
        who.require(Role.ADMIN)
        return [self._entries[k] for k in sorted(self._entries)]

    def add_entry(self, who: Principal, list_name: str, kind: ListKind, value: str) -> ListEntry:
        """Put ``value`` on the platform's ``allow`` or ``block`` list of ``kind``."""
        who.require(Role.ADMIN)
        key = (list_name, kind, value)
        if key in self._entries:
            raise AlreadyListed(f"{kind.value} {value!r} is already on the {list_name} list")
        if len(self._entries) >= MAX_LIST_ENTRIES:
            raise TooManyListEntries(
                f"the lists hold at most {MAX_LIST_ENTRIES} entries", limit=MAX_LIST_ENTRIES
            )
        entry = ListEntry(list_name, kind, value, PLATFORM, now_ms())
        self._entries[key] = entry
        self._intake.batch.part(RISK).entries[(list_name, kind.value, value)] = entry
        self._stage(
            who, entry.added_ms, PLATFORM, "list.added", _subject(entry), None, _entry_json(entry)
        )
        return entry

    def remove_entry(self, who: Principal, list_name: str, kind: ListKind, value: str) -> ListEntry:
        """Take ``value`` off the list; NotFound when it is not on it."""
        who.require(Role.ADMIN)
        entry = self._entries.pop((list_name, kind, value), None)
        if entry is None:
            raise NotFound(f"{kind.value} {value!r} is not on the {list_name} list")
        self._intake.batch.part(RISK).entries[(list_name, kind.value, value)] = None
        self._stage(
            who, now_ms(), PLATFORM, "list.removed", _subject(entry), _entry_json(entry), None
        )
        return entry

    # --- thresholds ----------------------------------------------------------------------------

    def thresholds(self, who: Principal) -> Settings:
        who.require(Role.ADMIN)
        return self._settings

    def set_thresholds(self, who: Principal, block: int, review: int) -> Settings:
        """The platform-wide scores at or above which orders are blocked, or reviewed."""
        who.require(Role.ADMIN)
        try:
            Thresholds(block, review)
        except RuleError as e:
            raise InvalidThresholds(str(e)) from e
        before = self._settings
        self._settings = replace(before, block=block, review=review)
        self._stage(
            who,
            now_ms(),
            PLATFORM,
            "thresholds.changed",
            "thresholds",
            {"block": before.block, "review": before.review},
            {"block": block, "review": review},
        )
        return self._settings

    # --- audit ---------------------------------------------------------------------------------

    async def audit(self, who: Principal, before_id: int | None, limit: int) -> list[AuditEntry]:
        """The audit log as committed, newest first: every entry for an admin, those of its
        own rules for a merchant (``before_id``: the cursor)."""
        who.require(Role.MERCHANT, Role.ADMIN)
        await self._intake.durable()  # a change just answered is readable
        owner = "" if who.role is Role.ADMIN else who.key
        return await self._store.risk_audit(owner, before_id, limit)


def _merchant(owner: str) -> Merchant | None:
    return None if owner == PLATFORM else owner


def _subject(e: ListEntry) -> str:
    return f"{e.list}:{e.kind.value}:{e.value}"


def _entry_json(e: ListEntry) -> dict[str, Any]:
    return {"list": e.list, "kind": e.kind.value, "value": e.value}
