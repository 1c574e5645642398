"""Expiry of unpaid orders, end to end, with a payment timeout of one second: the order becomes
``expired`` and its units return, durably, also when the deadline passes while the server is
down."""

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.server.e2e_lib import (
    Launch,
    Server,
    Shop,
    World,
    build_world,
    order_body,
    running_server,
    unique,
)

TIMEOUT = ("--payment-timeout-s", "1")


@pytest.fixture(scope="module")
def expiring(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server whose unpaid orders expire after one second, with a small catalogue."""
    with running_server(backend, tmp_path_factory.mktemp(f"expiry-{backend}"), TIMEOUT) as srv:
        yield build_world(srv)


def _deadline(order: dict[str, str]) -> datetime:
    return datetime.fromisoformat(order["payment_deadline"])


def test_an_unpaid_order_expires_and_its_units_return(expiring: World) -> None:
    shop, srv = expiring.shop, expiring.shop.srv
    sku = shop.sku({expiring.a: 5})
    buyer = srv.token("buyer", unique("late"))
    order = shop.order(buyer, [(sku, 3)], expiring.north).json()
    batch = srv.ok(
        "POST",
        "/v1/orders/batch",
        token=buyer,
        json={"orders": [order_body([(sku, 1)], expiring.north)]},
    )
    batched = batch["results"][0]["order"]
    assert _deadline(order) - datetime.fromisoformat(order["created_at"]) == timedelta(seconds=1)
    assert shop.totals(sku) == {"on_hand": 5, "available": 1, "reserved": 4, "sold": 0}

    shop.wait_for_status(order["id"], "expired")
    shop.wait_for_status(batched["id"], "expired")
    assert shop.totals(sku) == {"on_hand": 5, "available": 5, "reserved": 0, "sold": 0}
    expired = shop.get_order(order["id"], buyer)
    assert datetime.fromisoformat(expired["updated_at"]) >= _deadline(order)
    assert {(o["id"], o["status"]) for o in shop.all_orders(buyer)} == {
        (order["id"], "expired"),
        (batched["id"], "expired"),
    }
    # An expired order cannot be cancelled (the key avoids a separate bug of cancel's 409).
    resp = srv.call(
        "POST",
        f"/v1/orders/{order['id']}/cancel",
        token=buyer,
        headers={"Idempotency-Key": unique("k")},
    )
    assert resp.status == 409, resp
    assert resp.error_code == "invalid_state"
    # The units really are free again.
    assert shop.order(srv.token("buyer", unique("next")), [(sku, 5)], expiring.north).status == 201


def test_expiry_gives_back_the_buyers_purchase_allowance(expiring: World) -> None:
    shop, srv = expiring.shop, expiring.shop.srv
    sku = shop.sku({expiring.a: 10}, limit=1)
    buyer = srv.token("buyer", unique("limited"))
    first = shop.order(buyer, [(sku, 1)], expiring.north)
    assert first.status == 201, first
    over = shop.order(buyer, [(sku, 1)], expiring.north)
    assert over.status == 409, over
    assert over.error_code == "purchase_limit_exceeded"
    shop.wait_for_status(first.json()["id"], "expired")
    assert shop.order(buyer, [(sku, 1)], expiring.north).status == 201


def test_unpaid_orders_expire_across_a_restart(launch: Launch) -> None:
    srv: Server = launch(*TIMEOUT)
    world = build_world(srv)
    shop = world.shop
    sku = shop.sku({world.a: 10, world.b: 10})
    orders = [
        shop.order(srv.token("buyer", f"sleeper-{i}"), [(sku, i + 1)], region).json()
        for i, region in enumerate((world.north, world.south, world.north))
    ]
    cancelled = shop.order(srv.token("buyer", "canceller"), [(sku, 1)], world.north).json()
    srv.ok("POST", f"/v1/orders/{cancelled['id']}/cancel", token=srv.token("buyer", "canceller"))
    assert shop.totals(sku)["reserved"] == 6

    srv.stop()
    latest = max(_deadline(o) for o in orders).timestamp()
    time.sleep(max(0.0, latest - time.time()) + 0.3)
    srv.start()

    for order in orders:
        shop.wait_for_status(order["id"], "expired")
    assert shop.get_order(cancelled["id"])["status"] == "cancelled"
    assert shop.totals(sku) == {"on_hand": 20, "available": 20, "reserved": 0, "sold": 0}
    assert shop.by_warehouse(sku) == {
        world.a: {"on_hand": 10, "available": 10, "reserved": 0, "sold": 0},
        world.b: {"on_hand": 10, "available": 10, "reserved": 0, "sold": 0},
    }
    # Durably: after another restart the orders are still expired and the units free.
    srv.restart()
    assert {shop.get_order(o["id"])["status"] for o in orders} == {"expired"}
    assert shop.totals(sku) == {"on_hand": 20, "available": 20, "reserved": 0, "sold": 0}


def test_sigterm_while_an_expiry_is_being_committed_exits_cleanly(launch: Launch) -> None:
    """Graceful shutdown must not hang when the expiry sweeper has staged an expiry whose
    group commit is still in its window. A one-second commit window makes the moment easy to
    hit: the order expires at created + 1 s, the sweeper (every 0.1 s) stages the expiry and
    its commit waits out the window until about created + 2.1 s; SIGTERM comes at created +
    1.5 s."""
    srv = launch(*TIMEOUT)
    shop = Shop(srv)
    region = unique("slow")
    sku = shop.sku({shop.warehouse(regions=[region]): 10})
    # Restarted with the window only now: under it every write waits a second, and the
    # catalogue's two would cost more than the restart.
    srv.stop()
    srv.proc.args = (*TIMEOUT, "--commit-window-ms", "1000")
    srv.start()
    order = shop.order(srv.token("buyer", "sleepy"), [(sku, 1)], region).json()
    created = datetime.fromisoformat(order["created_at"]).timestamp()
    time.sleep(max(0.0, created + 1.5 - time.time()))
    proc = srv.proc.proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
        srv.proc.kill()
    assert code == 0, f"SIGTERM did not stop the server within 5 s (log: {srv.log_path})"
    srv.start()
    shop.wait_for_status(order["id"], "expired")
    assert shop.totals(sku) == {"on_hand": 10, "available": 10, "reserved": 0, "sold": 0}


def test_a_key_reused_after_its_retention_runs_afresh_without_failing_the_batch(
    backend: str, tmp_path: Path
) -> None:
    """Past the retention the old response is not replayed; its stored row must not collide
    with the new one (a collision would fail the whole group commit with 503s)."""
    args = ("--idempotency-retention-s", "1")
    with running_server(backend, tmp_path, args) as srv:
        world = build_world(srv)
        shop = world.shop
        sku = shop.sku({world.a: 10})
        buyer = srv.token("buyer", unique("reuse"))
        key = {"Idempotency-Key": unique("k")}
        first = shop.order(buyer, [(sku, 1)], world.north, headers=key)
        assert first.status == 201, first
        time.sleep(1.5)
        again = shop.order(buyer, [(sku, 2)], world.north, headers=key)
        assert again.status == 201, again
        assert again.json()["id"] != first.json()["id"]
        assert "Idempotent-Replayed" not in again.headers
        assert shop.totals(sku)["reserved"] == 3
