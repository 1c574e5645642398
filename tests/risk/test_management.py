"""Risk rules, lists and thresholds managed at run time (``pyorder.risk.management``) on a real
platform and store, both backends: each change swaps the live policy at once (the next
decision uses it), is audited with its before and after, and survives a restart; a bad
condition is refused with the rule language's message; on PostgreSQL a second cluster node
takes a change within its refresh period."""

import asyncio
import math
import re
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pyorder import Config, Platform, Principal, Role
from pyorder.intake import IntakeUnavailableError
from pyorder.kernel.errors import Forbidden, NotFound
from pyorder.model import WriteBatch
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.management import (
    MAX_RULES_PER_OWNER,
    AlreadyListed,
    InvalidRule,
    InvalidThresholds,
    TooManyRules,
)
from pyorder.risk.policy import ListKind, Outcome
from pyorder.risk.rules import Action
from pyorder.storage.base import StorageError
from pyorder.storage.sqlite import SqliteStore
from tests.support.cluster import two_nodes
from tests.support.postgres import fresh_postgres_database, postgres_dsn

ADMIN = Principal(Role.ADMIN, "ops")
ACME = Principal(Role.MERCHANT, "acme")
OTHER = Principal(Role.MERCHANT, "other")
BUYER = Principal(Role.BUYER, "b1")
FARM = "device_buyers_24h >= 5"


def _row(**features: float) -> list[float]:
    """A feature row: every feature missing (NaN) but those given."""
    row = [math.nan] * len(FEATURE_NAMES)
    for name, value in features.items():
        row[FEATURE_NAMES.index(name)] = value
    return row


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    if request.param == "sqlite":
        yield Config(data_dir=tmp_path)
        return
    postgres_dsn()
    with fresh_postgres_database("pyorder_risk") as dsn:
        yield Config(data_dir=tmp_path, database=dsn)


def test_each_change_swaps_the_live_policy_is_audited_and_survives_a_restart(
    config: Config,
) -> None:
    farm = _row(device_buyers_24h=6)

    async def first_run() -> None:
        platform = Platform(config)
        await platform.start()
        try:
            risk = platform.risk
            start = risk.policy
            assert start.decide(farm, 10).outcome is Outcome.ALLOW

            rule = risk.create_rule(ADMIN, Action.BLOCK, FARM, "device farms")
            assert risk.policy is not start  # swapped, before the commit even
            await platform.intake.durable()
            decision = risk.policy.decide(farm, 10)
            assert (decision.outcome, decision.decided_by) == (Outcome.BLOCK, "rule_1")
            assert start.decide(farm, 10).outcome is Outcome.ALLOW  # the old one is unchanged

            mine = risk.create_rule(ACME, Action.REVIEW, "score >= 20", "")
            assert mine.owner == "merchant:acme"
            assert risk.policy.decide(_row(), 30, merchant="merchant:acme").outcome is (
                Outcome.REVIEW
            )
            assert risk.policy.decide(_row(), 30, merchant="merchant:other").outcome is (
                Outcome.ALLOW
            )
            with pytest.raises(NotFound):  # another merchant's rule does not exist for it
                risk.update_rule(OTHER, mine.id, Action.ALLOW, "score >= 0", "")
            assert [r.id for r in risk.rules(OTHER)] == []
            assert [r.id for r in risk.rules(ACME)] == [mine.id]
            assert [r.id for r in risk.rules(ADMIN)] == [rule.id, mine.id]
            with pytest.raises(Forbidden):
                risk.rules(BUYER)

            risk.update_rule(ADMIN, rule.id, Action.REVIEW, "device_buyers_24h >= 3", "farms")
            assert risk.policy.decide(farm, 10).outcome is Outcome.REVIEW
            risk.delete_rule(ACME, mine.id)
            assert risk.policy.decide(_row(), 30, merchant="merchant:acme").outcome is (
                Outcome.ALLOW
            )

            risk.add_entry(ADMIN, "block", ListKind.IP, "203.0.113.7")
            keys = {ListKind.IP: "203.0.113.7"}
            assert risk.policy.decide(_row(), 0, keys).decided_by == "list:block:ip"
            with pytest.raises(AlreadyListed):
                risk.add_entry(ADMIN, "block", ListKind.IP, "203.0.113.7")
            with pytest.raises(Forbidden):  # lists are the platform's: admins only
                risk.add_entry(ACME, "allow", ListKind.BUYER, "b1")
            risk.add_entry(ADMIN, "allow", ListKind.BUYER, "b9")
            risk.remove_entry(ADMIN, "allow", ListKind.BUYER, "b9")
            with pytest.raises(NotFound):
                risk.remove_entry(ADMIN, "allow", ListKind.BUYER, "b9")

            assert risk.policy.decide(_row(), 60).outcome is Outcome.ALLOW
            risk.set_thresholds(ADMIN, block=55, review=40)
            assert risk.policy.decide(_row(), 60).outcome is Outcome.BLOCK
            with pytest.raises(InvalidThresholds):
                risk.set_thresholds(ADMIN, block=30, review=40)
            with pytest.raises(Forbidden):
                risk.set_thresholds(ACME, block=90, review=80)
            await platform.intake.durable()

            log = await risk.audit(ADMIN, None, 50)
            assert [(a.action, a.subject, a.principal) for a in reversed(log)] == [
                ("rule.created", "rule_1", "admin:ops"),
                ("rule.created", "rule_2", "merchant:acme"),
                ("rule.updated", "rule_1", "admin:ops"),
                ("rule.deleted", "rule_2", "merchant:acme"),
                ("list.added", "block:ip:203.0.113.7", "admin:ops"),
                ("list.added", "allow:buyer:b9", "admin:ops"),
                ("list.removed", "allow:buyer:b9", "admin:ops"),
                ("thresholds.changed", "thresholds", "admin:ops"),
            ]
            updated = log[-3]
            assert msgspec.json.decode(updated.before or "")["condition"] == FARM
            assert msgspec.json.decode(updated.after or "")["condition"] == (
                "device_buyers_24h >= 3"
            )
            assert msgspec.json.decode(log[0].after or "") == {
                "block": 55,
                "review": 40,
            }
            assert [a.action for a in await risk.audit(ACME, None, 50)] == [
                "rule.deleted",
                "rule.created",
            ]
            assert await risk.audit(OTHER, None, 50) == []
            assert [a.id for a in await risk.audit(ADMIN, log[1].id, 2)] == [
                log[2].id,
                log[3].id,
            ]
            assert risk.version == 8
        finally:
            await platform.stop()

    async def after_restart() -> None:
        platform = Platform(config)
        await platform.start()
        try:
            risk = platform.risk
            assert [(r.name, r.action, r.condition) for r in risk.rules(ADMIN)] == [
                ("rule_1", Action.REVIEW, "device_buyers_24h >= 3")
            ]
            assert [(e.list, e.kind, e.value) for e in risk.entries(ADMIN)] == [
                ("block", ListKind.IP, "203.0.113.7")
            ]
            settings = risk.thresholds(ADMIN)
            assert (settings.block, settings.review, settings.version) == (55, 40, 8)
            assert risk.policy.decide(farm, 10).outcome is Outcome.REVIEW
            assert risk.policy.decide(_row(), 60).outcome is Outcome.BLOCK
            # ids are never reused: rule_2 was deleted, the next one is rule_3
            assert risk.create_rule(ACME, Action.BLOCK, "score > 90", "").name == "rule_3"
            await platform.intake.durable()
        finally:
            await platform.stop()

    asyncio.run(first_run())
    asyncio.run(after_restart())


def test_a_bad_condition_or_one_rule_too_many_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        platform = Platform(Config(data_dir=tmp_path))
        await platform.start()
        try:
            risk = platform.risk
            for condition, says in (
                ("device_buyers >= 5", "unknown feature 'device_buyers'"),
                ("score >=", "does not parse"),
                ("__import__('os')", "the one function is missing(feature)"),
            ):
                with pytest.raises(InvalidRule, match=re.escape(says)) as refused:
                    risk.create_rule(ADMIN, Action.BLOCK, condition, "")
                assert refused.value.code == "invalid_rule"
            rule = risk.create_rule(ADMIN, Action.BLOCK, FARM, "")
            with pytest.raises(InvalidRule):
                risk.update_rule(ADMIN, rule.id, Action.BLOCK, "nope > 1", "")
            assert risk.rule(ADMIN, rule.id).condition == FARM
            assert risk.version == 1  # nothing refused was staged
            for i in range(MAX_RULES_PER_OWNER):
                risk.create_rule(ACME, Action.REVIEW, f"score >= {i}", "")
            with pytest.raises(TooManyRules):
                risk.create_rule(ACME, Action.REVIEW, "score >= 1", "")
            risk.create_rule(OTHER, Action.REVIEW, "score >= 1", "")  # per owner
            await platform.intake.durable()
        finally:
            await platform.stop()

    asyncio.run(body())


def test_a_second_cluster_node_takes_a_change_within_its_refresh_period(tmp_path: Path) -> None:
    postgres_dsn()
    with fresh_postgres_database("pyorder_risk_cluster") as dsn:

        async def body() -> None:
            async with two_nodes(dsn, tmp_path) as (a, b):
                leader, other = (a, b) if a.claim.leader else (b, a)
                assert other.risk_mirror is not None
                row = _row(device_buyers_24h=9)
                assert other.risk.policy.decide(row, 0).outcome is Outcome.ALLOW
                leader.risk.create_rule(ADMIN, Action.BLOCK, FARM, "")
                leader.risk.set_thresholds(ADMIN, block=50, review=30)
                await leader.intake.durable()
                loop = asyncio.get_running_loop()
                committed = loop.time()
                while other.risk.policy.decide(row, 0).outcome is not Outcome.BLOCK:
                    assert loop.time() - committed < other.risk_mirror.interval_s + 1.0
                    await asyncio.sleep(0.05)
                assert other.risk.thresholds(ADMIN).block == 50
                assert other.risk.version == leader.risk.version == 2

        asyncio.run(body())


class _FailsOnce(SqliteStore):
    """A SQLite store whose next commit fails, when armed, writing nothing."""

    armed = False

    async def commit(self, batch: WriteBatch) -> None:
        if self.armed:
            self.armed = False
            raise StorageError("disk full")
        await super().commit(batch)


def test_a_change_whose_commit_fails_leaves_neither_it_nor_its_audit_entry(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        store = _FailsOnce(tmp_path / "pyorder.sqlite3")
        platform = Platform(Config(data_dir=tmp_path), store=store)
        await platform.start()
        try:
            risk = platform.risk
            kept = risk.create_rule(ADMIN, Action.REVIEW, "score >= 50", "")
            await platform.intake.durable()
            store.armed = True
            risk.create_rule(ADMIN, Action.BLOCK, FARM, "")
            risk.set_thresholds(ADMIN, block=60, review=50)
            assert risk.policy.decide(_row(device_buyers_24h=9), 0).outcome is Outcome.BLOCK
            with pytest.raises(IntakeUnavailableError):
                await platform.intake.durable()
            for _ in range(250):  # the intake rebuilds the platform on its own
                if platform.intake.available and risk.version == 1:
                    break
                await asyncio.sleep(0.02)
            # the platform rebuilt from the store: the policy is the committed one again
            assert [r.id for r in risk.rules(ADMIN)] == [kept.id]
            assert risk.thresholds(ADMIN).block == 75
            assert risk.policy.decide(_row(device_buyers_24h=9), 0).outcome is Outcome.ALLOW
            assert [a.subject for a in await risk.audit(ADMIN, None, 10)] == ["rule_1"]
            state = await store.risk_state()
            assert [r.id for r in state.rules] == [kept.id]
            assert state.settings.version == 1
        finally:
            await platform.stop()

    asyncio.run(body())
