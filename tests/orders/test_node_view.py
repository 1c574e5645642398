"""What a cluster node holds of the store's snapshot (``pyorder.cluster.stock.node_view``):
the state of its own orders only, in every part that holds orders' state (payments, refunds,
parcels, returns, the outbox), the shared rows whole (delivery windows); and the return ids a
node hands out, distinct across nodes (``Returns``)."""

from types import SimpleNamespace
from typing import Any, cast

from pyorder.cluster.stock import node_view
from pyorder.ids import OrderIdGenerator
from pyorder.logistics.storage import LOGISTICS, StoredLogistics
from pyorder.model import Snapshot
from pyorder.payments.storage import PAYMENTS, REFUNDS, StoredPayments
from pyorder.returns.service import ID_STRIDE, Returns
from pyorder.returns.storage import RETURNS, StoredReturns
from pyorder.storage.outbox import OUTBOX


def _rows(**fields: Any) -> Any:
    """A stand-in row: the parts' cuts read only its order id (and a return's id and buyer)."""
    return SimpleNamespace(**fields)


def _snapshot() -> tuple[Snapshot, int, int]:
    mine, theirs = (int(OrderIdGenerator(n).next_ids(1)[0]) for n in (1, 2))
    both = (mine, theirs)
    parts: dict[str, object] = {
        PAYMENTS.name: StoredPayments(
            [_rows(order_id=o) for o in both], [_rows(order_id=o, number=1) for o in both]
        ),
        REFUNDS.name: [_rows(order_id=o) for o in both],
        LOGISTICS.name: StoredLogistics(
            [_rows(order_id=o) for o in both],
            [_rows(order_id=o) for o in both],
            [_rows(id=1), _rows(id=2)],
        ),
        RETURNS.name: StoredReturns(
            [_rows(id=10, order_id=mine, buyer="b"), _rows(id=300, order_id=theirs, buyer="c")],
            [_rows(return_id=10), _rows(return_id=300)],
            300,
        ),
        OUTBOX.name: [_rows(order_id=o, kind=None) for o in both],
    }
    snap = Snapshot([], {}, [], [], [], 0, 0, bought=[(0, "b", 2)], parts=parts)
    return snap, mine, theirs


def test_a_node_holds_its_own_orders_state_and_the_shared_rows() -> None:
    snap, mine, _ = _snapshot()
    view = node_view(snap, 1)
    pay = view.part(PAYMENTS)
    assert [p.order_id for p in pay.payments] == [mine]
    assert [a.order_id for a in pay.attempts] == [mine]
    assert [r.order_id for r in view.part(REFUNDS)] == [mine]
    ship = view.part(LOGISTICS)
    assert [s.order_id for s in ship.shipments] == [mine]
    assert [f.order_id for f in ship.fulfilments] == [mine]
    assert [w.id for w in ship.windows] == [1, 2]  # shared: every node keeps them all
    ret = view.part(RETURNS)
    assert ([r.id for r in ret.returns], [d.return_id for d in ret.decisions]) == ([10], [10])
    assert ret.top_id == 300  # new ids go above every node's
    assert [i.order_id for i in view.part(OUTBOX)] == [mine]
    # Purchase limits are counted by the database across nodes (``pyorder.cluster.limits``):
    # the core starts from no one's paid units, so a sale made void elsewhere never lingers.
    assert view.bought == []
    assert snap.bought == [(0, "b", 2)]
    # The snapshot itself is left as it was (a solo node would hold it whole).
    assert len(snap.part(PAYMENTS).payments) == 2


def test_return_ids_are_distinct_across_nodes_and_above_every_stored_one() -> None:
    snap, _, _ = _snapshot()
    none = cast(Any, None)  # loading and numbering touch none of the services

    def ids(node: int | None, n: int) -> list[int]:
        returns = Returns(none, none, none, none, none, none, none)
        returns.load(node_view(snap, node) if node is not None else snap, node)
        return [returns._new_id() for _ in range(n)]

    one, two = ids(1, 50), ids(2, 50)
    assert not set(one) & set(two)
    assert all(i > 300 and i % ID_STRIDE == 1 for i in one)
    assert all(i > 300 and i % ID_STRIDE == 2 for i in two)
    assert one == sorted(set(one))
    assert ids(None, 3) == [301, 302, 303]  # a node alone: the next ones, as before


def test_adopted_orders_reservations_are_renumbered_above_the_nodes_own() -> None:
    """Every node numbers its reservations from 1: a node that adopted a dead node's pending
    orders holds them under ids of its own, and its core rebuilds (a repeated id refused it)."""
    from pyorder.catalog.model import Sku, StockRow, Warehouse
    from pyorder.engine import Engine
    from pyorder.orders.model import Order, OrderLine, OrderStatus

    ids = {n: OrderIdGenerator(n) for n in (1, 5, 7)}

    def order(node: int, reservation: int) -> Order:
        oid = int(ids[node].next_ids(1)[0])
        line = OrderLine(sku=0, warehouse=0, quantity=1, unit_price=100, merchant="m")
        return Order(
            oid, "b", OrderStatus.PENDING_PAYMENT, "EUR", 100, "north", {}, reservation,
            0, 2**62, 0, (line,),
        )  # fmt: skip

    orders = [order(1, 1), order(1, 2), order(5, 1), order(5, 2), order(7, 1)]
    snap = Snapshot(
        [Warehouse(0, "w", "m")],
        {"north": [0]},
        [Sku(0, "m", "tea", 100, "EUR")],
        [StockRow(0, 0, 10, 5, 0)],
        orders,
        max(o.id for o in orders),
        2,
        stock_leases=[(0, 0, 1, 5)],
    )
    view = node_view(snap, 1, {5, 7})
    held = {o.id: o.reservation for o in view.pending_orders}
    assert [held[o.id] for o in orders] == [1, 2, 3, 4, 5]  # own kept; adopted by order id
    assert view.max_reservation == 5
    engine = Engine.rebuild(view, node=1, payment_timeout_ms=60_000)
    assert engine.inventory.stock(0).reserved == 5
