"""Two ``pyorder-server --cluster`` nodes, the payment and carrier sandboxes, and an order's
requests served by its node wherever they arrive (``pyorder.server.forwarding``,
``docs/scale-out.md``, "Requests routed to the order's node").

Orders are taken on node A; the buyer pays, the merchant ships and the buyer cancels through
node B, and both sandboxes post their webhooks to node B only: B forwards each to A, which
holds the orders. Then A is killed: B answers A's orders' requests 503 with ``Retry-After``
until a new node takes A's number, and then serves them again.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyorder._core import decode_order_id
from tests.logistics.lib import CarrierBox
from tests.payments.lib import Sandbox
from tests.returns.lib import policy_file
from tests.server.e2e_lib import Server, Shop
from tests.support.postgres import fresh_postgres_database
from tests.support.server import ServerProcess


@pytest.fixture
def stack() -> Iterator[list[ServerProcess | Sandbox | CarrierBox]]:
    """The processes a test starts, stopped after it whatever happened."""
    started: list[ServerProcess | Sandbox | CarrierBox] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_cluster_routing") as url:
        yield url


def _forwarded(srv: Server) -> dict[str, float]:
    """``pyorder_forwarded_requests_total`` by node label, from ``/metrics``."""
    text = srv.call("GET", "/metrics", token=srv.admin()).body.decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("pyorder_forwarded_requests_total{"):
            label, _, value = line.partition(" ")
            found[label.split('"')[1]] = float(value)
    return found


def _status(srv: Server, order_id: str, token: str) -> str:
    return str(srv.ok("GET", f"/v1/orders/{order_id}", token=token)["status"])


def _wait(srv: Server, order_id: str, token: str, status: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        seen = _status(srv, order_id, token)
        if seen == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} is {seen}, not {status}")


@dataclass
class Cluster:
    """Nodes A and B on one PostgreSQL, with the payment and carrier sandboxes posting their
    webhooks to node B only; a warehouse, a region and a SKU of 20 units of the merchant's."""

    data: Path
    args: tuple[str, ...]
    card: Sandbox
    carrier: CarrierBox
    tmp: Path
    proc_a: ServerProcess
    a: Server
    b: Server
    sku: int
    merchant: str
    buyer: str

    def order(self) -> str:
        """An order of the buyer's, taken on node A."""
        resp = Shop(self.a).order(self.buyer, [(self.sku, 1)], "route-north")
        assert resp.status == 201, resp
        return str(resp.json()["id"])

    def pay(self, order_id: str, srv: Server) -> None:
        resp = srv.call(
            "POST",
            f"/v1/orders/{order_id}/payments",
            token=self.buyer,
            json={"method": "card"},
            headers={"Idempotency-Key": f"pay-{order_id}"},
        )
        assert resp.status == 202, resp

    def ship(self, order_id: str, srv: Server, *, wait: bool = True) -> None:
        """The merchant ships the order; with ``wait``, until its parcel is delivered."""
        shipped = srv.call(
            "POST",
            f"/v1/orders/{order_id}/shipments",
            token=self.merchant,
            json={},
            headers={"Idempotency-Key": f"ship-{order_id}"},
        )
        assert shipped.status == 202, shipped
        if wait:
            self.delivered(order_id, srv)

    def delivered(self, order_id: str, srv: Server) -> None:
        deadline = time.monotonic() + 20
        tracking: dict[str, object] = {}
        while time.monotonic() < deadline:
            tracking = srv.ok("GET", f"/v1/orders/{order_id}/shipments", token=self.buyer)
            if tracking["fulfilment_status"] == "delivered":
                return
            time.sleep(0.1)
        raise AssertionError(f"order {order_id} was not delivered: {tracking}")


def _cluster(
    dsn: str, tmp_path: Path, stack: list[ServerProcess | Sandbox | CarrierBox]
) -> Cluster:
    data = tmp_path / "data"  # shared: one token secret for the cluster
    card, carrier = Sandbox("card1", "card"), CarrierBox()
    args = (
        "--cluster",
        "--payment-provider",
        card.spec(0),
        "--carrier",
        carrier.spec(),
        "--reconcile-interval-s",
        "0.3",
        "--returns-config",
        policy_file(tmp_path / "policy"),
    )
    proc_a = ServerProcess(data, dsn, args=args)
    proc_b = ServerProcess(data, dsn, args=args)
    # The sandboxes know node B only: every webhook about A's orders goes through B. They
    # start together with node A (which calls neither before an order is paid or shipped);
    # B starts once A is ready, as before.
    card.spawn(tmp_path, f"{proc_b.url}/v1/webhooks/payments/card1", ())
    stack.append(card)
    carrier.spawn(tmp_path, f"{proc_b.url}/v1/webhooks/carriers/{carrier.name}", 0.2, ())
    stack.append(carrier)
    stack.append(proc_a.spawn())
    card.wait_ready()
    carrier.wait_ready()
    proc_a.wait_ready()
    stack.append(proc_b.start())
    a, b = Server(proc_a, "postgres"), Server(proc_b, "postgres")
    shop = Shop(a)
    merchant = a.token("merchant", "seller")
    wh = shop.warehouse("route-a", regions=["route-north"])
    sku = shop.sku({wh: 20}, price=999, token=merchant)
    buyer = a.token("buyer", "bob")
    return Cluster(data, args, card, carrier, tmp_path, proc_a, a, b, sku, merchant, buyer)


def test_an_orders_requests_are_served_by_its_node(
    dsn: str, tmp_path: Path, stack: list[ServerProcess | Sandbox | CarrierBox]
) -> None:
    c = _cluster(dsn, tmp_path, stack)
    a, b, card, sku, merchant, buyer = c.a, c.b, c.card, c.sku, c.merchant, c.buyer
    data, args, proc_a, order = c.data, c.args, c.proc_a, c.order

    paid, cancelled, later = order(), order(), order()
    node_a = decode_order_id(int(paid))[1]
    assert decode_order_id(int(later))[1] == node_a

    # Paid through B: the payment starts on A, and the provider's webhook (to B) reaches A.
    resp = b.call(
        "POST",
        f"/v1/orders/{paid}/payments",
        token=buyer,
        json={"method": "card"},
        headers={"Idempotency-Key": f"pay-{paid}"},
    )
    assert resp.status == 202, resp
    _wait(b, paid, buyer, "paid")
    payment = b.ok("GET", f"/v1/orders/{paid}/payment", token=buyer)
    assert payment["status"] == "charged", payment
    # The same key again, through B: the stored answer, not a second charge.
    again = b.call(
        "POST",
        f"/v1/orders/{paid}/payments",
        token=buyer,
        json={"method": "card"},
        headers={"Idempotency-Key": f"pay-{paid}"},
    )
    assert again.status == 202, again
    assert len(card.charges_for(paid)) == 1

    # Shipped through B; the carrier's scans (to B) reach A, which holds the parcel.
    c.ship(paid, b)

    # Returned through B: the return is A's (its id is A's number modulo 256), the carrier's
    # scans of the return parcel (to B) reach A by the return's reference, and A refunds it at
    # the pickup scan (lightning), once.
    opened = b.call(
        "POST",
        f"/v1/orders/{paid}/returns",
        token=buyer,
        json={"lines": [{"sku": sku, "quantity": 1}], "reason": "too big"},
        headers={"Idempotency-Key": f"return-{paid}"},
    )
    assert opened.status == 201, opened
    [ret] = opened.json()["returns"]
    rid = int(ret["id"])
    assert rid % 256 == node_a
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ret = b.ok("GET", f"/v1/returns/{rid}", token=buyer)
        if ret["restocked_at"] is not None:
            break
        time.sleep(0.1)
    assert (ret["status"], ret["restocked_at"] is not None) == ("refunded", True), ret
    [charge] = card.charges_for(paid)
    refunds = [r for r in card.refunds() if r["payment_intent"] == charge["payment_intent"]]
    assert [r["amount"] for r in refunds] == [999]
    # Every node lists it (read from the store), to its buyer and to its merchant.
    for node in (a, b):
        mine = node.ok("GET", "/v1/returns", token=buyer)["returns"]
        assert [r["id"] for r in mine] == [rid], mine
        theirs = node.ok("GET", "/v1/returns?status=refunded", token=merchant)["returns"]
        assert [r["id"] for r in theirs] == [rid], theirs
        assert node.ok("GET", "/v1/returns", token=a.token("buyer", "eve"))["returns"] == []

    # Cancelled through B: A releases the unit it reserved.
    before = Shop(b).stock(sku)["stock"]
    resp = b.call("POST", f"/v1/orders/{cancelled}/cancel", token=buyer)
    assert resp.status == 200, resp
    assert resp.json()["status"] == "cancelled"
    assert _status(a, cancelled, buyer) == "cancelled"
    after = Shop(b).stock(sku)["stock"]
    assert after["reserved"] == before["reserved"] - 1, (before, after)

    # B forwarded them to A; A forwarded nothing.
    assert _forwarded(b).get(str(node_a), 0) >= 8
    assert _forwarded(a) == {}
    # A delivery window opened through B is listed by A, and picked for A's order through B:
    # A books it (the pick is the order's node's).
    opened = b.call(
        "POST",
        "/v1/regions/route-north/delivery-windows",
        token=b.admin(),
        json={"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T12:00:00Z", "capacity": 5},
    )
    assert opened.status == 201, opened
    window = int(opened.json()["id"])
    deadline = time.monotonic() + 5
    while True:
        listed = a.ok("GET", "/v1/regions/route-north/delivery-windows", token=buyer)["windows"]
        if [w["id"] for w in listed] == [window] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(w["id"], w["remaining"]) for w in listed] == [(window, 5)], listed
    picked = b.call(
        "POST",
        f"/v1/orders/{later}/delivery-window",
        token=buyer,
        json={"window": window},
        headers={"Idempotency-Key": f"pick-{later}"},
    )
    assert picked.status == 200, picked
    assert picked.json()["delivery_window"]["remaining"] == 4
    assert _forwarded(b).get(str(node_a), 0) >= 9

    # A killed: its orders' requests get 503 with Retry-After from B, until a node takes A's
    # number again (the lowest free one) and serves them.
    proc_a.kill()
    resp = b.call("POST", f"/v1/orders/{later}/cancel", token=buyer)
    assert resp.status == 503, resp
    assert resp.error_code == "order_node_unavailable"
    assert resp.headers["retry-after"] == "1"
    proc_c = ServerProcess(data, dsn, args=args)
    stack.append(proc_c.start())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        resp = b.call("POST", f"/v1/orders/{later}/cancel", token=buyer)
        if resp.status != 503:
            break
        time.sleep(0.2)
    assert resp.status == 200, resp
    assert resp.json()["status"] == "cancelled"


def test_a_dead_nodes_orders_are_adopted_by_the_leader(
    dsn: str, tmp_path: Path, stack: list[ServerProcess | Sandbox | CarrierBox]
) -> None:
    """Node A killed and not restarted: after ``adopt_after_s`` (5 s) the leader, B, adopts
    A's number. It loads A's orders (a rebuild) and serves them: the parcel booking A owed the
    carrier (which was down) is made, A's unpaid order is paid, through B; its requests are no
    longer forwarded."""
    c = _cluster(dsn, tmp_path, stack)
    paid, unpaid = c.order(), c.order()
    node_a = decode_order_id(int(paid))[1]
    c.pay(paid, c.b)
    _wait(c.b, paid, c.buyer, "paid")
    # Shipped while the carrier is down: A owes it the booking (its outbox), and dies owing it.
    c.carrier.stop()
    c.ship(paid, c.b, wait=False)
    time.sleep(0.5)  # A tries, and will try again
    c.proc_a.kill()
    c.carrier.start(c.tmp, f"{c.b.url}/v1/webhooks/carriers/{c.carrier.name}", 0.2, ())
    resp = c.b.call("GET", f"/v1/orders/{paid}/payment", token=c.buyer)
    assert (resp.status, resp.error_code) == (503, "order_node_unavailable")

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resp = c.b.call("GET", f"/v1/orders/{paid}/payment", token=c.buyer)
        if resp.status == 200:
            break
        assert resp.status == 503, resp  # forwarded to a dead node, or B rebuilding
        time.sleep(0.2)
    assert resp.status == 200, resp
    assert resp.json()["status"] == "charged"
    text = c.b.call("GET", "/metrics", token=c.b.admin()).body.decode()
    assert "pyorder_node_numbers_served 2.0" in text, text
    assert "pyorder_nodes_adopted_total 1.0" in text, text
    forwarded = _forwarded(c.b).get(str(node_a), 0)

    c.delivered(paid, c.b)  # the parcel booked by B, the carrier's scans (to B) applied there
    c.pay(unpaid, c.b)  # A's reservation, now in B's core, becomes a sale
    _wait(c.b, unpaid, c.buyer, "paid")
    assert len(c.card.charges_for(unpaid)) == 1
    assert _forwarded(c.b).get(str(node_a), 0) == forwarded  # served on B itself
    stock = Shop(c.b).stock(c.sku)["stock"]
    assert (stock["sold"], stock["reserved"]) == (2, 0), stock
