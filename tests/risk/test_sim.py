"""The synthetic data generator (``pyorder.risk.sim``): deterministic, the prevalence asked,
every scenario and hard negative present, labels late, nothing latent in the events, and
fraud visible only through behaviour that honest shoppers partly share."""

import dataclasses
import gzip
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from pyorder.risk.events import AgentClass, OrderAttempt, PaymentAttempt
from pyorder.risk.sim import HONEST_KINDS, SCENARIOS, SimConfig, Simulation, load, simulate, write
from pyorder.risk.sim.__main__ import main
from pyorder.risk.sim.store import EVENTS

SMALL = SimConfig(seed=7, prevalence=0.02, days=3, shoppers=4_000)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(SMALL)


def _by_scenario(sim: Simulation) -> dict[str, list[OrderAttempt]]:
    found: dict[str, list[OrderAttempt]] = defaultdict(list)
    for order, scenario in zip(sim.orders, sim.labels.scenario, strict=True):
        found[scenario].append(order)
    return found


def _payments_by_order(sim: Simulation) -> dict[int, list[PaymentAttempt]]:
    found: dict[int, list[PaymentAttempt]] = defaultdict(list)
    payments = [e for e in sim.events if isinstance(e, PaymentAttempt)]
    for payment, order in zip(payments, sim.payment_order, strict=True):
        found[order].append(payment)
    return found


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_data(tmp_path: Path) -> None:
    write(simulate(SMALL), tmp_path / "a")
    # Another process, with another string hash seed: nothing may depend on either.
    command = [sys.executable, "-m", "pyorder.risk.sim", "--out", str(tmp_path / "b")]
    command += ["--seed", "7", "--prevalence", "0.02", "--days", "3", "--shoppers", "4000"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(command, check=True, capture_output=True, cwd=root, env=env)
    write(simulate(dataclasses.replace(SMALL, seed=8)), tmp_path / "c")
    for name in ("events.jsonl.gz", "labels.json", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / EVENTS).read_bytes() != (tmp_path / "c" / EVENTS).read_bytes()


def test_a_written_data_set_loads_back_equal(sim: Simulation, tmp_path: Path) -> None:
    write(sim, tmp_path)
    assert load(tmp_path) == sim


@pytest.mark.parametrize("prevalence", [0.001, 0.02])
def test_fraud_is_the_prevalence_asked_of_all_orders(prevalence: float) -> None:
    labels = simulate(SimConfig(seed=1, prevalence=prevalence, days=2, shoppers=20_000)).labels
    assert len(labels.fraud) > 8_000
    assert sum(labels.fraud) / len(labels.fraud) == pytest.approx(prevalence, rel=0.1)


def test_every_scenario_and_honest_kind_is_present(sim: Simulation) -> None:
    assert set(sim.labels.scenario) == set(SCENARIOS) | set(HONEST_KINDS)
    for fraud, scenario in zip(sim.labels.fraud, sim.labels.scenario, strict=True):
        assert fraud == (scenario in SCENARIOS)


def test_the_stream_is_time_ordered_and_payments_follow_their_orders(sim: Simulation) -> None:
    times = [e.at_ms for e in sim.events]
    assert times == sorted(times)
    assert min(times) >= SMALL.start_ms
    orders = sim.orders
    for order, payments in _payments_by_order(sim).items():
        assert all(
            p.at_ms > orders[order].at_ms and p.buyer == orders[order].buyer for p in payments
        )
    assert all(o.account_created_ms <= o.at_ms < SMALL.end_ms for o in orders)


def test_labels_arrive_after_their_orders_some_late_some_never(sim: Simulation) -> None:
    labels, orders = sim.labels, sim.orders
    arrivals = [
        (order.at_ms, at)
        for order, fraud, at in zip(orders, labels.fraud, labels.label_at_ms, strict=True)
        if fraud
    ]
    assert all(at is None or at > placed for placed, at in arrivals)
    assert any(at is None for _, at in arrivals)
    assert any(at is not None and at > SMALL.end_ms for _, at in arrivals)  # after the window
    assert any(at is not None and at <= SMALL.end_ms for _, at in arrivals)
    assert all(
        at is None for fraud, at in zip(labels.fraud, labels.label_at_ms, strict=True) if not fraud
    )


def test_the_events_file_holds_the_schema_fields_and_nothing_else(
    sim: Simulation, tmp_path: Path
) -> None:
    write(sim, tmp_path)
    schema = {
        "order": {f.name for f in dataclasses.fields(OrderAttempt)},
        "payment": {f.name for f in dataclasses.fields(PaymentAttempt)},
    }
    truth = set(SCENARIOS) | set(HONEST_KINDS)
    with gzip.open(tmp_path / EVENTS, "rb") as lines:
        for line in lines:
            row = orjson.loads(line)
            assert set(row) - {"kind"} <= schema[row["kind"]]
            assert not truth & {v for v in row.values() if isinstance(v, str)}


def test_scalpers_order_within_seconds_of_the_release_and_some_fans_do_too(sim: Simulation) -> None:
    found = _by_scenario(sim)

    def fast(orders: list[OrderAttempt]) -> float:
        released = [o for o in orders if o.sku_release_ms is not None]
        return sum(o.at_ms - o.sku_release_ms < 5_000 for o in released if o.sku_release_ms) / len(
            released
        )

    assert fast(found["scalper"]) > 0.4
    assert 0.0 < fast(found["flash_sale"]) < fast(found["scalper"]) / 3
    # Not every bot is headless, and not every headless client is a bot.
    assert any(o.agent == AgentClass.BROWSER for o in found["scalper"])
    assert any(o.agent == AgentClass.HEADLESS for o in found["flash_sale"] + found["office"])


def test_card_testing_declines_many_cards_before_one_passes(sim: Simulation) -> None:
    payments = _payments_by_order(sim)
    declines: dict[bool, list[int]] = defaultdict(list)
    for i, scenario in enumerate(sim.labels.scenario):
        if scenario == "card_testing" or scenario in HONEST_KINDS:
            declines[scenario == "card_testing"].append(sum(not p.authorised for p in payments[i]))
    tester, honest = declines[True], declines[False]
    assert sum(d >= 2 for d in tester) / len(tester) > 0.6
    assert sum(d >= 2 for d in honest) / len(honest) < 0.02
    assert any(d == 1 for d in honest)  # honest declines exist: a card out of funds


def test_hard_negatives_share_ips_addresses_and_regions_as_fraud_does(sim: Simulation) -> None:
    buyers_by_ip: dict[str, set[int]] = defaultdict(set)
    buyers_by_address: dict[str, set[int]] = defaultdict(set)
    for order in sim.orders:
        if order.ip is not None:
            buyers_by_ip[order.ip].add(order.buyer)
        if order.address is not None:
            buyers_by_address[order.address].add(order.buyer)
    found = _by_scenario(sim)
    honest = [o for kind in HONEST_KINDS for o in found[kind]]
    # Offices and carrier NAT: many honest buyers behind one IP; offices: one address.
    assert any(len(buyers_by_ip[o.ip]) >= 10 for o in honest if o.ip is not None)
    assert any(len(buyers_by_address[o.address]) >= 5 for o in found["office"] if o.address)
    # Promo abusers and farms also gather accounts on an address.
    assert any(len(buyers_by_address[o.address]) >= 5 for o in found["promo_abuse"] if o.address)
    assert any(len(buyers_by_address[o.address]) >= 3 for o in found["account_farm"] if o.address)

    def mismatched(orders: list[OrderAttempt]) -> float:
        known = [o for o in orders if o.ip_region and o.ship_region]
        return sum(o.ip_region != o.ship_region for o in known) / len(known)

    # Travellers and taken-over accounts both order from far away; households never do.
    assert mismatched(found["traveller"]) > 0.9
    assert mismatched(found["account_takeover"]) > 0.5
    assert mismatched(found["household"]) == 0.0
    # A household shares its laptop: honest devices with several buyers exist.
    buyers_by_device: dict[str, set[int]] = defaultdict(set)
    for order in found["household"]:
        if order.device is not None:
            buyers_by_device[order.device].add(order.buyer)
    assert max(len(b) for b in buyers_by_device.values()) >= 2


def test_the_command_writes_a_data_set_and_prints_its_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "--seed",
            "3",
            "--days",
            "1",
            "--shoppers",
            "1000",
            "--prevalence",
            "0.02",
            "--out",
            str(tmp_path),
        ]
    )
    printed = capsys.readouterr().out
    loaded = load(tmp_path)
    assert loaded.config == SimConfig(seed=3, days=1, shoppers=1_000, prevalence=0.02)
    assert f"{len(loaded.labels.fraud)} orders ({sum(loaded.labels.fraud)} fraud)" in printed
    assert "| kind | orders |" in printed


def test_takeovers_come_from_a_device_the_old_account_never_used(sim: Simulation) -> None:
    devices: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for order, fraud in zip(sim.orders, sim.labels.fraud, strict=True):
        if order.device is not None and not fraud:
            devices[order.buyer][order.device] += 1
    takeovers = _by_scenario(sim)["account_takeover"]
    assert all(o.at_ms - o.account_created_ms > 180 * 86_400_000 for o in takeovers)
    assert all(o.device not in devices[o.buyer] for o in takeovers if o.device is not None)
    # Honest shoppers come back on their own devices.
    repeat = [n for used in devices.values() for n in used.values() if sum(used.values()) > 1]
    assert sum(n > 1 for n in repeat) / len(repeat) > 0.5


def test_promo_abusers_order_minutes_after_sign_up_as_some_new_shoppers_do(sim: Simulation) -> None:
    found = _by_scenario(sim)
    hour = 3_600_000
    abusers = [o.at_ms - o.account_created_ms for o in found["promo_abuse"]]
    assert all(age < hour for age in abusers)
    honest = [o for kind in HONEST_KINDS for o in found[kind]]
    assert any(o.at_ms - o.account_created_ms < hour for o in honest)


@pytest.mark.parametrize("prevalence", [0.0005, 0.03])
def test_a_prevalence_outside_the_range_is_refused(prevalence: float) -> None:
    with pytest.raises(ValueError, match="prevalence"):
        SimConfig(prevalence=prevalence)
