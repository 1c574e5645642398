"""The platform's risk rules, lists and thresholds from a TOML file, applied at start
(``pyorder-server --risk --risk-config FILE``): configuration kept under version control beside
what admins and merchants change over the API (``docs/risk.md``, "Managing rules and lists").

The file is the format of ``docs/risk.md`` (``[thresholds]``, ``[[rules]]`` with ``id``,
``action``, ``when`` and an optional ``description``, ``[lists.allow]`` / ``[lists.block]``),
platform rules only (a merchant's own rules are the merchant's to manage). Applying it makes the
stored configuration say what the file says, through the same changes as the API, each audited
as made by ``admin:config``:

* the thresholds, when they differ;
* each rule, known by its file ``id`` (stored as the rule's description, ``config:<id>``):
  created, or updated when its action, condition or description differ; a rule the file made
  earlier and no longer lists is deleted. Rules made over the API are left alone;
* each list value the lists do not hold yet is added (values are taken off over the API).

Applying the same file again changes nothing (and audits nothing). A file that does not parse,
names an unknown action, feature or list kind, or repeats a rule id is refused before the
server starts. In a cluster, the node that leads at start applies it; the others read the
result as they read every change (``pyorder.cluster.risk``).
"""

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyorder.auth import Principal, Role
from pyorder.risk.management import LISTS, RiskControl
from pyorder.risk.policy import ListKind, Thresholds, cached_condition, lists_of
from pyorder.risk.records import PLATFORM, StoredRule
from pyorder.risk.rules import Action, RuleError

MARK = "config:"
"""A rule made from the file has the description ``config:<id>`` (then its own, if any)."""
APPLIER = Principal(Role.ADMIN, "config")
"""Who the audit log says made the file's changes."""


@dataclass(frozen=True, slots=True)
class FileRule:
    key: str
    """The rule's ``id`` in the file."""
    action: Action
    condition: str
    description: str = ""

    @property
    def stored_description(self) -> str:
        return f"{MARK}{self.key}" + (f" {self.description}" if self.description else "")


@dataclass(frozen=True, slots=True)
class RiskFile:
    """What a risk configuration file says (``read``)."""

    thresholds: Thresholds | None = None
    rules: tuple[FileRule, ...] = ()
    lists: Mapping[str, Mapping[ListKind, frozenset[str]]] = field(default_factory=dict)


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
    thresholds = None
    if "thresholds" in doc:
        t = doc["thresholds"]
        thresholds = Thresholds(int(t.get("block", 75)), int(t.get("review", 65)))
    rules: list[FileRule] = []
    for i, r in enumerate(doc.get("rules", []), 1):
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
        if any(rule.key == other.key for other in rules):
            raise RuleError(f"rule {i}: id {rule.key!r} is used twice")
        try:
            cached_condition(rule.condition, names)
        except RuleError as e:
            raise RuleError(f"rule {rule.key!r}: {e}") from e
        rules.append(rule)
    lists = doc.get("lists", {})
    if set(lists) - set(LISTS):
        raise RuleError(f"lists are {list(LISTS)}: got {sorted(lists)}")
    return RiskFile(thresholds, tuple(rules), {name: lists_of(lists[name]) for name in lists})


def read(path: Path, names: tuple[str, ...]) -> RiskFile:
    """``parse`` of the file at ``path`` (OSError when it cannot be read)."""
    return parse(path.read_text(encoding="utf-8"), names)


def _made_from_file(rule: StoredRule) -> str | None:
    """The file id of a live platform rule the file made, else None."""
    first = rule.description.split(" ", 1)[0]
    if rule.deleted or rule.owner != PLATFORM or not first.startswith(MARK):
        return None
    return first.removeprefix(MARK)


def apply(risk: RiskControl, config: RiskFile) -> int:
    """Stage the changes that make ``risk``'s configuration say what ``config`` says (see the
    module); returns how many there are (0: it already did)."""
    who, changes = APPLIER, 0
    held = risk.thresholds(who)
    t = config.thresholds
    if t is not None and (t.block, t.review) != (held.block, held.review):
        risk.set_thresholds(who, t.block, t.review)
        changes += 1
    made = {key: r for r in risk.rules(who) if (key := _made_from_file(r)) is not None}
    for rule in config.rules:
        stored = made.pop(rule.key, None)
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
    for gone in made.values():
        risk.delete_rule(who, gone.id)
        changes += 1
    listed = {(e.list, e.kind, e.value) for e in risk.entries(who)}
    for name, kinds in config.lists.items():
        for kind, values in kinds.items():
            for value in sorted(values):
                if (name, kind, value) not in listed:
                    risk.add_entry(who, name, kind, value)
                    changes += 1
    return changes
