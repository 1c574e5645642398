"""Domain errors carry codes only; the server's one table (``pyorder.server.statuses``) gives each its
HTTP status. Every ``DomainError`` subclass in pyorder (its server too) has its code there, and the
Rust order book, which renders its refusals itself (the bytes path), agrees with the table."""

import asyncio
import importlib
import json
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyorder
from pyorder.auth import Principal, Role
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import DomainError, NotOnSale, RiskBlocked
from pyorder.orders.input import OrderInput
from pyorder.orders.service import Answer
from pyorder.platform import Config, Platform
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import RiskSettings, set_policy
from pyorder.risk.policy import ListKind, Policy
from pyorder.server.statuses import STATUSES, status_of


def _subclasses(kind: type[DomainError]) -> Iterator[type[DomainError]]:
    yield kind
    for sub in kind.__subclasses__():
        yield from _subclasses(sub)


def _all_domain_errors() -> list[type[DomainError]]:
    """Every ``DomainError`` subclass, after importing every module of pyorder (its server too)."""
    for module in pkgutil.walk_packages(pyorder.__path__, "pyorder."):
        importlib.import_module(module.name)
    return list(_subclasses(DomainError))


def test_every_domain_error_code_has_a_status_and_no_error_carries_one() -> None:
    kinds = _all_domain_errors()
    assert len(kinds) > 30, [k.__name__ for k in kinds]  # the walk found them all
    missing = {f"{k.__module__}.{k.__qualname__}": k.code for k in kinds if k.code not in STATUSES}
    assert not missing, f"codes with no HTTP status in pyorder/server/statuses.py: {missing}"
    carrying = [k.__qualname__ for k in kinds if "status" in vars(k)]
    assert not carrying, f"domain errors carrying an HTTP status: {carrying}"
    assert all(400 <= status <= 599 for status in STATUSES.values())


def test_a_code_missing_from_the_table_takes_its_kinds_status() -> None:
    from pyorder.kernel.errors import Conflict

    class Unlisted(Conflict):
        code = "not_in_the_table"

    assert status_of(Unlisted("x")) == 409


def test_the_rust_order_book_answers_each_refusal_with_the_tables_status(tmp_path: Path) -> None:
    merchant = Principal(Role.MERCHANT, "acme")
    buyer = Principal(Role.BUYER, "alice")

    async def refusals() -> dict[str, int]:
        platform = Platform(Config(data_dir=tmp_path, risk=RiskSettings(enabled=True, model=None)))
        await platform.start()
        assert platform.risk_engine is not None
        blocked = Policy(FEATURE_NAMES, block={ListKind.BUYER: frozenset({"mallory"})})
        set_policy(platform.risk_engine, blocked)
        try:
            wh = platform.catalog.create_warehouse(merchant, "west", ["north"])
            sku = platform.catalog.create_sku(
                merchant,
                title="phone",
                price=100,
                currency="CNY",
                stock={wh.id: 1},
                limit_per_buyer=1,
            ).sku.id
            later = platform.catalog.create_sku(
                merchant,
                title="flash sale",
                price=100,
                currency="CNY",
                stock={wh.id: 1},
                release_ms=now_ms() + 3_600_000,
            ).sku.id
            await platform.intake.durable()
            address = {"name": "A", "line1": "1 Road", "city": "X", "region": "north"}

            def body(quantity: int, region: str = "north", item: int = sku) -> bytes:
                lines = [{"sku": item, "quantity": quantity}]
                return json.dumps(
                    {"lines": lines, "address": {**address, "region": region}}
                ).encode()

            bob = Principal(Role.BUYER, "bob")
            mallory = Principal(Role.BUYER, "mallory")
            with pytest.raises(RiskBlocked):  # the embedding API: the same refusal
                platform.orders.place(mallory, OrderInput([(sku, 1)], address))
            with pytest.raises(NotOnSale):
                platform.orders.place(buyer, OrderInput([(later, 1)], address))
            calls = [
                (mallory, body(1)),  # risk control's block list: nothing reserved
                (buyer, b"{not json"),
                (buyer, body(0)),
                (buyer, body(1, "mars")),
                (buyer, body(1, item=later)),  # its release time still to come
                (buyer, body(2)),  # past the limit of one per buyer
                (buyer, body(1)),  # the only unit, sold
                (bob, body(1)),  # none left
            ]
            seen: dict[str, int] = {}
            for who, raw in calls:
                answer = platform.orders.place_json(who, raw)
                assert isinstance(answer, Answer)  # a solo node answers at once
                if answer.status != 201:
                    seen[json.loads(answer.body)["error"]["code"]] = answer.status
            await platform.intake.durable()
            return seen
        finally:
            await platform.stop()

    seen = asyncio.run(refusals())
    assert set(seen) == {
        "malformed_json",
        "invalid_input",
        "unknown_region",
        "purchase_limit_exceeded",
        "out_of_stock",
        "not_on_sale",
        "risk_blocked",
    }
    assert seen == {code: STATUSES[code] for code in seen}
