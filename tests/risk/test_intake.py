"""Risk control at intake, the Python side (``pyorder.risk.intake``): what a request says of its
client (IP behind trusted proxies, the IP's region, the agent class), the engine's start with
and without a model, and the failure policy when the model cannot be loaded, through the order
book in the core."""

import asyncio
import ipaddress
import json
from pathlib import Path

import pytest

from pyorder._core import Inventory, OrderBook, OrderIdGenerator, OrderRows, RiskEngine
from pyorder.auth import Principal, Role
from pyorder.kernel.clock import now_ms
from pyorder.orders.input import OrderInput
from pyorder.orders.model import OrderStatus
from pyorder.platform import Config, Platform
from pyorder.risk.decisions import decision_from_order, unpack_order_risk
from pyorder.risk.events import AgentClass
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import (
    DEFAULT_MODEL,
    Clients,
    IpRegions,
    RiskSettings,
    agent_class,
    client_ip,
    load_engine,
    set_policy,
)
from pyorder.risk.policy import ListKind, Policy
from pyorder.risk.rules import Action, Rule

T0 = 1_800_000_000_000


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (None, AgentClass.UNKNOWN),
        ("", AgentClass.UNKNOWN),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36",
            AgentClass.BROWSER,
        ),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0", AgentClass.HEADLESS),
        ("curl/8.4.0", AgentClass.HEADLESS),
        ("python-requests/2.31", AgentClass.HEADLESS),
        ("Go-http-client/1.1", AgentClass.HEADLESS),
        ("okhttp/4.12.0", AgentClass.APP),
        ("Dalvik/2.1.0 (Linux; U; Android 14)", AgentClass.APP),
        ("MyShop/3.1 CFNetwork/1490 Darwin/23.2.0", AgentClass.APP),
        ("SomethingElse/1.0", AgentClass.UNKNOWN),
    ],
)
def test_agent_classes(agent: str | None, expected: AgentClass) -> None:
    assert agent_class(agent) is expected


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    # No proxy configured, or the peer is not one: the peer, whatever the header says.
    assert client_ip("203.0.113.5", "1.2.3.4", []) == "203.0.113.5"
    assert client_ip("203.0.113.5", "1.2.3.4", trusted) == "203.0.113.5"
    # Behind a trusted proxy: the right-most hop that is not a trusted proxy.
    assert client_ip("10.0.0.2", "198.51.100.7", trusted) == "198.51.100.7"
    assert client_ip("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.9", trusted) == "198.51.100.7"
    # Only trusted hops, none, or garbage: the peer.
    assert client_ip("10.0.0.2", "10.0.0.3", trusted) == "10.0.0.2"
    assert client_ip("10.0.0.2", None, trusted) == "10.0.0.2"
    assert client_ip("10.0.0.2", "not-an-ip", trusted) == "10.0.0.2"
    assert client_ip("10.0.0.2", "2001:db8::1", trusted) == "2001:db8::1"


def test_ip_regions_take_the_longest_prefix(tmp_path: Path) -> None:
    table = tmp_path / "regions.csv"
    table.write_text(
        "# network,region\n10.0.0.0/8,east\n10.1.0.0/16,north\n2001:db8::/32,west\n",
        encoding="utf-8",
    )
    regions = IpRegions.read(table)
    assert regions.region("10.2.3.4") == "east"
    assert regions.region("10.1.3.4") == "north"
    assert regions.region("2001:db8::5") == "west"
    assert regions.region("192.0.2.1") is None
    assert regions.region("garbage") is None
    assert regions.region(None) is None
    bad = tmp_path / "bad.csv"
    bad.write_text("10.0.0.0/8\n", encoding="utf-8")
    with pytest.raises(ValueError, match="network,region"):
        IpRegions.read(bad)
    clients = Clients.of(RiskSettings(trusted_proxies=("127.0.0.0/8",), ip_regions=table))
    assert clients.info("127.0.0.1", "10.1.0.9", "curl/8") == ("10.1.0.9", "north", 3, None)


def _book() -> tuple[OrderBook, OrderRows]:
    inventory = Inventory()
    inventory.add_warehouse()
    inventory.set_region(0, [0])
    book = OrderBook(inventory, OrderIdGenerator(1), 900_000)
    book.set_region("north", 0)
    sku = inventory.add_sku({0: 100})
    book.set_sku(sku, 1_000, "CNY", "merchant:m")
    return book, OrderRows()


def _place(book: OrderBook, rows: OrderRows, buyer: str = "b") -> tuple[int, dict[str, object]]:
    body = {
        "lines": [{"sku": 0, "quantity": 1}],
        "address": {"name": "A", "line1": "1 Road", "city": "X", "region": "north"},
        "context": {"device_id": "d-1"},
    }
    status, out, _, _ = book.place_one(json.dumps(body).encode(), buyer, 7, rows, T0)
    return status, json.loads(out)


def test_the_shipped_model_loads_and_scores_every_order() -> None:
    # No allowed order sampled: its decision is in its row (tests/server/test_fraud_reports.py
    # has the sampled ones).
    engine = load_engine(RiskSettings(enabled=True, sample_allowed=0.0))
    assert engine.model_version is not None
    assert DEFAULT_MODEL.with_name("manifest.json").exists()
    book, rows = _book()
    book.set_risk(engine)
    status, _ = _place(book, rows)
    assert status == 201
    assert rows.decision_tuples() == []  # allowed: the decision is in the order's row
    ((order_id, risk),) = rows.order_risks()
    assert risk is not None
    decision = decision_from_order((order_id, "b", "merchant:m", T0, None, risk))
    assert (decision.outcome, decision.three_ds) == ("allow", False)
    assert decision.score is not None
    assert 0 <= decision.score <= 99
    assert decision.model == engine.model_version
    assert (decision.decided_by, decision.fired) == ("default", ())
    assert decision.reasons
    for reason in decision.reasons:
        assert reason.feature in FEATURE_NAMES
        assert reason.contribution > 0


@pytest.mark.parametrize(
    ("on_failure", "status", "outcome"),
    [("allow", 201, "allow"), ("review", 201, "review"), ("block", 422, "block")],
)
def test_a_model_that_cannot_load_fails_open_or_closed(
    tmp_path: Path, on_failure: str, status: int, outcome: str
) -> None:
    broken = tmp_path / "model.txt"
    broken.write_text("not a model", encoding="utf-8")
    engine = load_engine(
        RiskSettings(enabled=True, model=broken, on_failure=on_failure, sample_allowed=0.0)
    )
    assert engine.model_version is None
    book, rows = _book()
    book.set_risk(engine)
    got, _ = _place(book, rows)
    assert got == status
    if outcome == "allow":  # in the order's row
        score, _, decided_by = unpack_order_risk(rows.order_risks()[-1][1] or b"")[:3]
    else:
        decision = rows.decision_tuples()[-1]
        assert decision[4] == outcome
        score, decided_by = decision[6], decision[8]
    assert score is None  # decided without a score
    assert decided_by == ("default" if on_failure == "allow" else "scoring_failed")
    assert engine.counts[3] == 1
    # An allow list still allows, failed or not.
    set_policy(engine, Policy(FEATURE_NAMES, allow={ListKind.BUYER: frozenset({"vip"})}))
    got, _ = _place(book, rows, buyer="vip")
    assert got == 201
    assert unpack_order_risk(rows.order_risks()[-1][1] or b"")[2] == "list:allow:buyer"


def test_rules_only_and_a_missing_file() -> None:
    engine = load_engine(RiskSettings(enabled=True, model=None))
    assert (engine.model_version, engine.counts) == (None, (0, 0, 0, 0))
    missing = load_engine(RiskSettings(enabled=True, model=Path("/nonexistent/model.txt")))
    assert missing.model_version is None
    with pytest.raises(ValueError, match="on_failure"):
        load_engine(RiskSettings(enabled=True, on_failure="maybe"))


def test_the_embedding_api_passes_the_principals_account_age(tmp_path: Path) -> None:
    """``Orders.place`` from Python has no connection: the principal's ``account_created_ms``
    (a token's claim, or the embedder's own) is still risk control's account age."""

    async def main() -> list[OrderStatus]:
        platform = Platform(Config(data_dir=tmp_path, risk=RiskSettings(enabled=True, model=None)))
        await platform.start()
        try:
            assert platform.risk_engine is not None
            rule = Rule("young", Action.REVIEW, "account_age_s < 86400")
            set_policy(platform.risk_engine, Policy(FEATURE_NAMES, rules=((rule, None),)))
            merchant = Principal(Role.MERCHANT, "acme")
            wh = platform.catalog.create_warehouse(merchant, "west", ["north"])
            sku = platform.catalog.create_sku(
                merchant, title="t", price=100, currency="CNY", stock={wh.id: 5}
            ).sku.id
            address = {"name": "A", "line1": "1 Road", "city": "X", "region": "north"}
            day = 86_400_000
            statuses = [
                platform.orders.place(
                    Principal(Role.BUYER, f"b{i}", created), OrderInput([(sku, 1)], address)
                ).status
                for i, created in enumerate((now_ms() - day // 24, now_ms() - 30 * day, None))
            ]
            await platform.intake.durable()
            return statuses
        finally:
            await platform.stop()

    assert asyncio.run(main()) == [
        OrderStatus.IN_REVIEW,
        OrderStatus.PENDING_PAYMENT,
        OrderStatus.PENDING_PAYMENT,
    ]


def test_the_configured_share_of_allowed_orders_is_sampled() -> None:
    """``RiskSettings.sample_allowed`` reaches the core: a hash of the id picks the same orders
    every time, close to the share over many ids."""
    engine = load_engine(RiskSettings(enabled=True, model=None, sample_allowed=0.05))
    assert engine.sample_allowed == pytest.approx(0.05)
    ids = range(1 << 30, (1 << 30) + 20_000)
    taken = [i for i in ids if engine.samples(i)]
    assert 800 <= len(taken) <= 1_200
    assert taken == [i for i in ids if engine.samples(i)]
    assert not any(
        load_engine(RiskSettings(enabled=True, sample_allowed=0.0)).samples(i) for i in ids
    )
    with pytest.raises(ValueError, match="share from 0 to 1"):
        RiskEngine(None, sample_allowed=1.5)
