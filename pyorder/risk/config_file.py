"""The platform's risk rules, lists and thresholds from a TOML file, applied at start
(``pyorder-server --risk --risk-config FILE``): configuration kept under version control beside
what admins and merchants change over the API (``docs/risk.md``, "Managing rules and lists").

The file is the format of ``docs/risk.md`` (``[thresholds]``, ``[[rules]]`` with ``id``,
``action``, ``when`` and an optional ``description``, ``[lists.allow]`` / ``[lists.block]``),
platform rules only (a merchant's own rules are the merchant's to manage). Applying it makes the
stored configuration say what the file says, through the same changes as the API, each audited
as made by ``admin:config``:

* the thresholds it gives (one of the two may be left to the stored value), when they differ;
* each rule, known by its file ``id`` (stored as the rule's description, ``config:<id>``,
  which the API refuses for its own rules): a rule the file made earlier and no longer lists
  is deleted first, then each is updated when its action, condition or description differ, or
  created. Rules made over the API are left alone;
* each list value the lists do not hold yet is added (values are taken off over the API).

Applying the same file again changes nothing (and audits nothing). A file that does not parse,
names an unknown action, feature or list kind, repeats a rule id, breaks a limit of the API
(condition, description, list value) or would pass the rules' or lists' limits is refused:
before the server starts, or (the limits, which depend on what is stored) before anything is
staged. In a cluster the node that leads applies it, at its start and whenever it becomes the
leader (a rolling restart, a failover); the others read the result as they read every change
(``pyorder.cluster.risk``).
"""

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyorder.risk.management import (
    CONFIG_APPLIER,
    CONFIG_MARK,
    LIST_VALUE,
    LISTS,
    MAX_CONDITION,
    MAX_DESCRIPTION,
    MAX_LIST_ENTRIES,
    MAX_RULES,
    MAX_RULES_PER_OWNER,
    RiskControl,
)
from pyorder.risk.policy import ListKind, Thresholds, cached_condition, lists_of
from pyorder.risk.records import PLATFORM, StoredRule
from pyorder.risk.rules import Action, RuleError

_LIST_VALUE = re.compile(LIST_VALUE)


@dataclass(frozen=True, slots=True)
class FileRule:
    key: str
    """The rule's ``id`` in the file."""
    action: Action
    condition: str
    description: str = ""

    @property
    def stored_description(self) -> str:
        return f"{CONFIG_MARK}{self.key}" + (f" {self.description}" if self.description else "")


@dataclass(frozen=True, slots=True)
class RiskFile:
    """What a risk configuration file says (``read``)."""

    block: int | None = None
    """The block threshold; None: the stored one stays."""
    review: int | None = None
    rules: tuple[FileRule, ...] = ()
    lists: Mapping[str, Mapping[ListKind, frozenset[str]]] = field(default_factory=dict)


def _table(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RuleError(f"{what} must be a table")
    return value


def _score(table: Mapping[str, Any], key: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise RuleError(f"thresholds.{key} must be an integer from 0 to 100")
    return value


def _rule(i: int, r: Any, names: tuple[str, ...]) -> FileRule:
    r = _table(r, f"rule {i}")
    if "merchant" in r:
        raise RuleError(f"rule {i}: a merchant's own rules are managed over the API")
    try:
        rule = FileRule(
            str(r["id"]), Action(r["action"]), str(r["when"]), str(r.get("description", ""))
        )
    except (KeyError, ValueError) as e:
        raise RuleError(
            f"rule {i}: needs id, action (one of {list(map(str, Action))}) and when: {e}"
        ) from e
    if not rule.key or any(c.isspace() for c in rule.key):
        raise RuleError(f"rule {i}: its id must be non-empty, without spaces")
    if len(rule.condition) > MAX_CONDITION or "\0" in rule.condition:
        raise RuleError(f"rule {rule.key!r}: a condition has at most {MAX_CONDITION} characters")
    if len(rule.stored_description) > MAX_DESCRIPTION or "\0" in rule.stored_description:
        raise RuleError(
            f"rule {rule.key!r}: 'config:<id> <description>' has at most {MAX_DESCRIPTION}"
            " characters"
        )
    try:
        cached_condition(rule.condition, names)
    except RuleError as e:
        raise RuleError(f"rule {rule.key!r}: {e}") from e
    return rule


def parse(text: str, names: tuple[str, ...]) -> RiskFile:
    """A risk configuration from its TOML text, every condition checked against the feature
    ``names``; RuleError names what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"the risk configuration is not TOML: {e}") from e
    unknown = set(doc) - {"thresholds", "rules", "lists"}
    if unknown:
        raise RuleError(f"unknown sections {sorted(unknown)}: thresholds, rules and lists only")
    t = _table(doc.get("thresholds", {}), "thresholds")
    block, review = _score(t, "block"), _score(t, "review")
    if block is not None and review is not None:
        Thresholds(block, review)  # review <= block
    found = doc.get("rules", [])
    if not isinstance(found, list):
        raise RuleError("rules must be an array of tables ([[rules]])")
    rules: list[FileRule] = []
    for i, r in enumerate(found, 1):
        rule = _rule(i, r, names)
        if any(rule.key == other.key for other in rules):
            raise RuleError(f"rule {i}: id {rule.key!r} is used twice")
        rules.append(rule)
    lists = _table(doc.get("lists", {}), "lists")
    if set(lists) - set(LISTS):
        raise RuleError(f"lists are {list(LISTS)}: got {sorted(lists)}")
    values: dict[str, Mapping[ListKind, frozenset[str]]] = {}
    for name in lists:
        kinds = _table(lists[name], f"lists.{name}")
        if any(not isinstance(v, list) for v in kinds.values()):
            raise RuleError(f"lists.{name}: each kind is an array of values")
        values[name] = lists_of(kinds)
        for kind, listed in values[name].items():
            bad = sorted(v for v in listed if not _LIST_VALUE.fullmatch(v))
            if bad:
                raise RuleError(f"lists.{name}.{kind}: {bad[0]!r} is not a list value")
    return RiskFile(block, review, tuple(rules), values)


def read(path: Path, names: tuple[str, ...]) -> RiskFile:
    """``parse`` of the file at ``path`` (OSError when it cannot be read)."""
    return parse(path.read_text(encoding="utf-8"), names)


def _made_from_file(rule: StoredRule) -> str | None:
    """The file id of a live platform rule the file made, else None."""
    first = rule.description.split(" ", 1)[0]
    if rule.deleted or rule.owner != PLATFORM or not first.startswith(CONFIG_MARK):
        return None
    return first.removeprefix(CONFIG_MARK)


def apply(risk: RiskControl, config: RiskFile) -> int:
    """Stage the changes that make ``risk``'s configuration say what ``config`` says (see the
    module); returns how many there are (0: it already did). RuleError, with nothing staged,
    when the result would pass the rules' or lists' limits or its thresholds would cross."""
    who = CONFIG_APPLIER
    held = risk.thresholds(who)
    block = held.block if config.block is None else config.block
    review = held.review if config.review is None else config.review
    Thresholds(block, review)
    live = risk.rules(who)
    made: dict[str, StoredRule] = {}
    extra: list[StoredRule] = []  # a second rule of one file id (only by a race): dropped
    for r in live:
        key = _made_from_file(r)
        if key is None:
            continue
        if key in made:
            extra.append(r)
        else:
            made[key] = r
    wanted = {rule.key for rule in config.rules}
    gone = [r for key, r in made.items() if key not in wanted] + extra
    new = [rule for rule in config.rules if rule.key not in made]
    platform = sum(r.owner == PLATFORM for r in live) - len(gone) + len(new)
    if platform > MAX_RULES_PER_OWNER or len(live) - len(gone) + len(new) > MAX_RULES:
        raise RuleError(
            f"the file would make {platform} platform rules: at most {MAX_RULES_PER_OWNER}"
            f" per owner and {MAX_RULES} in all"
        )
    listed = {(e.list, e.kind, e.value) for e in risk.entries(who)}
    adds = [
        (name, kind, value)
        for name, kinds in config.lists.items()
        for kind, values in kinds.items()
        for value in sorted(values)
        if (name, kind, value) not in listed
    ]
    if len(listed) + len(adds) > MAX_LIST_ENTRIES:
        raise RuleError(f"the file would pass the lists' {MAX_LIST_ENTRIES} entries")
    changes = 0
    if (block, review) != (held.block, held.review):
        risk.set_thresholds(who, block, review)
        changes += 1
    for r in gone:
        risk.delete_rule(who, r.id)
        changes += 1
    for rule in config.rules:
        stored = made.get(rule.key)
        if stored is None:
            risk.create_rule(who, rule.action, rule.condition, rule.stored_description)
        elif (stored.action, stored.condition, stored.description) != (
            rule.action,
            rule.condition,
            rule.stored_description,
        ):
            risk.update_rule(who, stored.id, rule.action, rule.condition, rule.stored_description)
        else:
            continue
        changes += 1
    for name, kind, value in adds:
        risk.add_entry(who, name, kind, value)
        changes += 1
    return changes
