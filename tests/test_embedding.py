"""The embedding API: what ``pyorder`` exports, the example of the README run on both stores,
and placing from Python (``Orders.place``, no JSON) deciding exactly as ``POST /v1/orders``
(``Orders.place_json``) does for the same order."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

import pyorder
from pyorder import (
    Address,
    Config,
    DomainError,
    InvalidInput,
    Order,
    OrderInput,
    OrderStatus,
    Platform,
    Principal,
    Role,
    open_store,
)
from pyorder.orders.input import UnknownRegion
from pyorder.orders.service import Answer
from pyorder.server.statuses import STATUSES
from tests.support.postgres import fresh_postgres_database

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "embed.py"
MERCHANT = Principal(Role.MERCHANT, "acme")
BUYER = Principal(Role.BUYER, "alice")
ADDRESS = {"name": "Alice", "line1": "1 Road", "city": "X", "region": "north"}


def test_exports_resolve_and_import_stays_small() -> None:
    assert set(pyorder.__all__) == {"__version__", *pyorder._WHERE}
    for name in pyorder.__all__:
        assert getattr(pyorder, name) is not None, name
    assert pyorder.Platform is Platform
    assert issubclass(pyorder.UnknownRegion, pyorder.InvalidInput)
    with pytest.raises(AttributeError):
        _ = pyorder.Nothing
    # The exports are imported on first use: ``import pyorder`` loads none of the platform.
    probe = "import pyorder, sys; print(sorted(m for m in sys.modules if m.startswith('pyorder')))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=_env()
    ).stdout
    assert out.strip() == "['pyorder', 'pyorder._core']"


# --- the README's example -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Config]:
    if request.param == "sqlite":
        yield Config(data_dir=tmp_path)
        return
    with fresh_postgres_database("embed") as dsn:
        yield Config(data_dir=tmp_path, database=dsn)


def test_the_example_places_refuses_cancels_and_stores(config: Config) -> None:
    args = [sys.executable, str(EXAMPLE), "--data-dir", str(config.data_dir)]
    if config.database:
        args += ["--database", config.database]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 0, done.stderr
    assert "refused: out_of_stock {'sku': 0}" in done.stdout, done.stdout

    async def stored() -> tuple[list[Order], list[tuple[int, int, int, int]]]:
        store = open_store(config)
        await store.open()
        try:
            orders = await store.list_orders(buyer=BUYER.subject, before_id=None, limit=10)
            stock = [(r.warehouse, r.on_hand, r.reserved, r.sold) for r in await store.get_stock(0)]
            return orders, stock
        finally:
            await store.close()

    orders, stock = asyncio.run(stored())
    cancelled, kept = orders  # newest first
    assert (kept.status, cancelled.status) == (OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED)
    assert [(li.sku, li.quantity, li.unit_price) for li in kept.lines] == [(0, 2, 99_900)]
    assert kept.address["country"] == "CN"  # the API's default, as the order shows it
    assert f"order {kept.id} is pending_payment, order {cancelled.id} cancelled" in done.stdout
    assert stock == [(0, 3, 2, 0)]  # on hand, reserved (the kept order), sold


def test_the_readme_example_runs_as_printed() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Embedding pyorder in Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["out_of_stock {'sku': 0}", "cancelled 3"]


def _env() -> dict[str, str]:
    """This process's environment with the repository first on the import path."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


# --- placing from Python decides as the JSON path does --------------------------------------

LINES_101 = [(i, 1) for i in range(101)]
CASES: list[tuple[list[tuple[int, int]], dict[str, Any]]] = [
    ([(0, 1)], ADDRESS),
    ([(0, 1)], {**ADDRESS, "country": "JP", "phone": "+81", "postal_code": "100"}),
    ([(0, 0)], ADDRESS),
    ([(0, 10_001)], ADDRESS),
    ([(-1, 1)], ADDRESS),
    ([(2**31, 1)], ADDRESS),
    ([(2**63 - 1, 1)], ADDRESS),
    ([(0, 1), (1, -3)], ADDRESS),
    ([], ADDRESS),
    (LINES_101, ADDRESS),
    ([(7, 1)], ADDRESS),  # no such SKU
    ([(0, 1), (0, 2)], ADDRESS),  # twice
    ([(0, 1), (1, 1)], ADDRESS),  # two currencies
    ([(0, 9)], ADDRESS),  # more than in stock
    ([(0, 1)], {**ADDRESS, "region": "mars"}),
    ([(0, 1)], {**ADDRESS, "region": "a b"}),
    ([(0, 1)], {**ADDRESS, "name": ""}),
    ([(0, 1)], {**ADDRESS, "city": "x" * 201}),
    ([(0, 1)], {**ADDRESS, "line1": "a\0"}),
    ([(0, 1)], {**ADDRESS, "country": "cn"}),
    ([(0, 1)], {k: v for k, v in ADDRESS.items() if k != "line1"}),
    ([(0, 1)], {**ADDRESS, "floor": "3"}),
]


def _outcome_json(
    platform: Platform, lines: list[tuple[int, int]], address: Mapping[str, str]
) -> Any:
    body = orjson.dumps(
        {"lines": [{"sku": s, "quantity": q} for s, q in lines], "address": address}
    )
    answer = platform.orders.place_json(BUYER, body)
    assert isinstance(answer, Answer)  # a solo node answers at once (no limits to claim)
    out = orjson.loads(answer.body)
    return out if answer.status == 201 else out["error"]


def _outcome_typed(
    platform: Platform, lines: list[tuple[int, int]], address: Address | Mapping[str, str]
) -> Any:
    try:
        order = platform.orders.place(BUYER, OrderInput(lines, address))
    except DomainError as e:
        return {"code": e.code, "message": e.message, "details": e.details, "class": type(e)}
    return order


def _comparable(order: Order) -> dict[str, Any]:
    """An order as ``OrderOut`` shows it, without what differs between two placings."""
    return {
        "lines": [
            (li.sku, li.quantity, li.unit_price, li.warehouse, li.merchant) for li in order.lines
        ],
        "total": order.total,
        "currency": order.currency,
        "address": order.address,
        "buyer": order.buyer,
        "status": order.status.value,
    }


def test_placing_from_python_decides_as_the_json_path(tmp_path: Path) -> None:
    async def body() -> None:
        platform = Platform(Config(data_dir=tmp_path))
        await platform.start()
        try:
            wh = platform.catalog.create_warehouse(MERCHANT, "west", ["north"])
            for currency in ("CNY", "USD"):  # SKU 0, SKU 1
                platform.catalog.create_sku(
                    MERCHANT, title="t", price=250, currency=currency, stock={wh.id: 8}
                )
            for lines, address in CASES:
                expected = _outcome_json(platform, lines, address)
                got = _outcome_typed(platform, lines, address)
                if isinstance(got, Order):
                    assert "code" not in expected, (lines, address, expected)
                    staged = platform.intake.staged_order(got.id)
                    assert got == staged  # what Python got is what is staged
                    from_json = platform.intake.staged_order(int(expected["id"]))
                    assert from_json is not None
                    assert _comparable(got) == _comparable(from_json)
                    continue
                cls = got.pop("class")
                assert got == expected, (lines, address)
                assert cls.code == expected["code"]
                assert issubclass(cls, InvalidInput if STATUSES[cls.code] == 422 else DomainError)
            await platform.intake.durable()
        finally:
            await platform.stop()

    asyncio.run(body())


def test_typed_values_beyond_json_and_an_address_object(tmp_path: Path) -> None:
    async def body() -> None:
        platform = Platform(Config(data_dir=tmp_path))
        await platform.start()
        try:
            wh = platform.catalog.create_warehouse(MERCHANT, "west", ["north"])
            platform.catalog.create_sku(
                MERCHANT, title="t", price=250, currency="CNY", stock={wh.id: 8}
            )
            with pytest.raises(InvalidInput) as refused:
                platform.orders.place(BUYER, OrderInput([(2**70, 1)], ADDRESS))
            assert refused.value.message == "Expected `int` <= 2147483647 - at `$.lines[0].sku`"
            assert refused.value.details == {"path": "$.lines[0].sku"}
            with pytest.raises(InvalidInput, match=">= 1"):
                platform.orders.place(BUYER, OrderInput([(0, -(2**70))], ADDRESS))
            with pytest.raises(UnknownRegion) as region:
                platform.orders.place(BUYER, OrderInput([(0, 1)], Address("A", "1", "X", "south")))
            assert region.value.details == {"field": "address.region"}
            with pytest.raises(TypeError):
                platform.orders.place(BUYER, OrderInput([(0, "1")], ADDRESS))  # type: ignore[list-item]
            order = platform.orders.place(
                BUYER, OrderInput([(0, 3)], Address("A", "1", "X", "north", phone="555"))
            )
            assert order.address == {
                "name": "A",
                "line1": "1",
                "city": "X",
                "region": "north",
                "postal_code": "",
                "country": "CN",
                "line2": "",
                "phone": "555",
            }
            assert (order.total, order.lines[0].warehouse) == (750, wh.id)
            assert platform.engine.inventory.stock(0).reserved == 3
            await platform.intake.durable()
            assert await platform.orders.get(BUYER, order.id) == order
        finally:
            await platform.stop()

    asyncio.run(body())
