"""Operating an endpoint end to end: resending an event that failed every attempt, and
giving an endpoint a new secret, against the real server and a real receiver on loopback."""

import time
from pathlib import Path
from typing import Any

import pytest

from pyorder.kernel.signing import SignatureMismatch
from tests.server.e2e_lib import Server, Shop, running_server
from tests.support.postgres import postgres_dsn

from .lib import FAST_RETRIES, Receiver, deliveries, register

MAX_ATTEMPTS = 3
SERVER_ARGS = (*FAST_RETRIES, "--webhook-max-attempts", str(MAX_ATTEMPTS))


def _world(srv: Server) -> tuple[Shop, str, str, int]:
    """A shop with merchant X's SKU in stock in region r1: (shop, X's token, buyer, SKU)."""
    shop = Shop(srv)
    x, buyer = srv.token("merchant", "x"), srv.token("buyer", "b")
    wh = shop.warehouse(regions=["r1"])
    return shop, x, buyer, shop.sku({wh: 10}, token=x)


def _order(shop: Shop, buyer: str, sku: int) -> str:
    resp = shop.order(buyer, [(sku, 1)], "r1")
    assert resp.status == 201, resp
    return str(resp.json()["id"])


def _delivery_of(srv: Server, token: str, endpoint_id: int, order_id: str) -> dict[str, Any]:
    [found] = [d for d in deliveries(srv, token, endpoint_id) if d["order_id"] == order_id]
    return found


def _wait(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_failed_event_resent_is_delivered_once_more(backend: str, tmp_path: Path) -> None:
    """An event fails every attempt against a receiver answering 500, then the next one is
    delivered once it recovers. Resending the failed one sends it again, once, with a fresh
    budget of attempts; a delivered, unknown or another merchant's event cannot be resent."""
    if backend == "postgres":
        postgres_dsn()
    with Receiver() as hooks, running_server(backend, tmp_path, SERVER_ARGS) as srv:
        shop, x, buyer, sku = _world(srv)
        ep = register(srv, x, hooks.url("x"), ["order.created"])
        base = f"/v1/webhook-endpoints/{ep['id']}/deliveries"
        hooks.down("x")
        lost = _order(shop, buyer, sku)
        _wait(lambda: _delivery_of(srv, x, ep["id"], lost)["state"] == "failed")
        failed = _delivery_of(srv, x, ep["id"], lost)
        assert (failed["attempts"], failed["last_status"]) == (MAX_ATTEMPTS, 500), failed
        assert failed["next_attempt_at"] is None
        assert len(hooks.hits("x")) == MAX_ATTEMPTS

        hooks.up("x")
        later = _order(shop, buyer, sku)
        hooks.wait_for(lambda: [e["order_id"] for e in hooks.events("x")] == [later])
        _wait(lambda: _delivery_of(srv, x, ep["id"], later)["state"] == "delivered")
        delivered = _delivery_of(srv, x, ep["id"], later)

        resp = srv.call("POST", f"{base}/{delivered['id']}/retry", token=x)
        assert (resp.status, resp.error_code) == (409, "invalid_state"), resp
        resp = srv.call("POST", f"{base}/evt_999999/retry", token=x)
        assert (resp.status, resp.error_code) == (404, "not_found"), resp
        resp = srv.call("POST", f"{base}/{failed['id']}/retry", token=srv.token("merchant", "y"))
        assert (resp.status, resp.error_code) == (404, "not_found"), resp
        resp = srv.call("POST", f"{base}/evt_x/retry", token=x)
        assert resp.status == 422, resp

        key = {"Idempotency-Key": "resend-1"}
        first = srv.call("POST", f"{base}/{failed['id']}/retry", token=x, headers=key)
        assert first.status == 200, first
        again = first.json()
        assert (again["id"], again["state"], again["attempts"]) == (failed["id"], "pending", 0)
        assert (again["last_status"], again["last_error"]) == (500, "HTTP 500")
        assert again["next_attempt_at"] is not None
        replay = srv.call("POST", f"{base}/{failed['id']}/retry", token=x, headers=key)
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == again

        def resent() -> list[dict[str, Any]]:
            return [e for e in hooks.events("x") if e["id"] == failed["id"]]

        hooks.wait_for(lambda: len(resent()) == 1)
        _wait(lambda: _delivery_of(srv, x, ep["id"], lost)["state"] == "delivered")
        done = _delivery_of(srv, x, ep["id"], lost)
        assert (done["attempts"], done["last_status"], done["last_error"]) == (1, 200, "")
        time.sleep(0.3)  # several retry periods: nothing more is sent
        assert len(resent()) == 1
        assert len(hooks.hits("x")) == MAX_ATTEMPTS + 2
        bodies = {h.body for h in hooks.hits("x") if h.event["id"] == failed["id"]}
        assert len(bodies) == 1, "the same event, the same bytes"
        assert hooks.accepted("x")[-1].verified(ep["secret"])["order_id"] == lost
        # Delivered now: resending it again is refused (the number alone names it too).
        number = failed["id"].removeprefix("evt_")
        resp = srv.call("POST", f"{base}/{number}/retry", token=srv.admin())
        assert (resp.status, resp.error_code) == (409, "invalid_state"), resp


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_rotated_secret_signs_the_events_sent_afterwards(backend: str, tmp_path: Path) -> None:
    """After a rotation the answer holds the new secret (shown nowhere else), and the next
    event verifies under it and not under the old one."""
    if backend == "postgres":
        postgres_dsn()
    with Receiver() as hooks, running_server(backend, tmp_path, FAST_RETRIES) as srv:
        shop, x, buyer, sku = _world(srv)
        ep = register(srv, x, hooks.url("x"), ["order.created"])
        old = ep.pop("secret")
        first = _order(shop, buyer, sku)
        hooks.wait_for(lambda: len(hooks.accepted("x")) == 1)
        assert hooks.accepted("x")[0].verified(old)["order_id"] == first

        path = f"/v1/webhook-endpoints/{ep['id']}/rotate-secret"
        resp = srv.call("POST", path, token=srv.token("merchant", "y"))
        assert (resp.status, resp.error_code) == (404, "not_found"), resp
        rotated = srv.ok("POST", path, token=x)
        new = rotated.pop("secret")
        assert new.startswith("whsec_")
        assert new != old
        assert {**rotated, "updated_at": ep["updated_at"]} == ep
        shown = srv.ok("GET", f"/v1/webhook-endpoints/{ep['id']}", token=x)
        assert "secret" not in shown
        assert shown == rotated

        second = _order(shop, buyer, sku)
        hooks.wait_for(lambda: len(hooks.accepted("x")) == 2)
        hit = hooks.accepted("x")[1]
        assert hit.verified(new)["order_id"] == second
        with pytest.raises(SignatureMismatch):
            hit.verified(old)
