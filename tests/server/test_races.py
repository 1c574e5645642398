"""Races over HTTP against the real server: a flash sale of one SKU, through single orders and
the batch endpoint; one Idempotency-Key sent 20 times at once; keys across a restart; and
requests that race a failing group commit."""

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.server.e2e_lib import (
    Call,
    CommitReplyDropper,
    Launch,
    Server,
    Shop,
    World,
    build_world,
    order_body,
    running_server,
    unique,
)
from tests.support.postgres import postgres_dsn

BUYERS = 200
UNITS = 50


def _assert_sold_out(shop: Shop, sku: int, warehouse: int) -> None:
    assert shop.totals(sku) == {"on_hand": UNITS, "available": 0, "reserved": UNITS, "sold": 0}
    assert shop.by_warehouse(sku) == {
        warehouse: {"on_hand": UNITS, "available": 0, "reserved": UNITS, "sold": 0}
    }


def test_200_buyers_race_for_50_units(server: Server, world: World) -> None:
    shop = world.shop
    sku = shop.sku({world.a: UNITS})
    tag = uuid.uuid4().hex[:6]
    tokens = [server.token("buyer", f"racer-{tag}-{i}") for i in range(BUYERS)]
    body = order_body([(sku, 1)], world.north)
    responses = server.concurrently([Call("POST", "/v1/orders", t, body) for t in tokens])

    statuses = Counter(r.status for r in responses)
    assert statuses == {201: UNITS, 409: BUYERS - UNITS}, statuses
    refused = [r for r in responses if r.status == 409]
    assert {r.error_code for r in refused} == {"out_of_stock"}
    assert all(r.json()["error"]["details"]["sku"] == sku for r in refused)
    created = [r.json() for r in responses if r.status == 201]
    assert len({o["id"] for o in created}) == UNITS
    assert all(o["status"] == "pending_payment" for o in created)
    _assert_sold_out(shop, sku, world.a)
    # Each acknowledged order is readable by its buyer; a late buyer still gets 409.
    for token, resp in zip(tokens, responses, strict=True):
        if resp.status == 201:
            assert shop.get_order(resp.json()["id"], token) == resp.json()
    assert shop.order(tokens[0], [(sku, 1)], world.north).status == 409
    _assert_sold_out(shop, sku, world.a)


def test_200_buyers_race_for_50_units_through_the_batch_endpoint(
    server: Server, world: World
) -> None:
    shop = world.shop
    sku = shop.sku({world.a: UNITS})
    tag = uuid.uuid4().hex[:6]
    tokens = [server.token("buyer", f"batcher-{tag}-{i}") for i in range(BUYERS)]
    one = order_body([(sku, 1)], world.north)
    # Each buyer sends a batch of two one-unit orders: 400 orders for 50 units.
    responses = server.concurrently(
        [Call("POST", "/v1/orders/batch", t, {"orders": [one, one]}) for t in tokens]
    )
    assert Counter(r.status for r in responses) == {200: BUYERS}
    results = [item for r in responses for item in r.json()["results"]]
    assert Counter(item["status"] for item in results) == {201: UNITS, 409: 2 * BUYERS - UNITS}
    assert {item["error"]["code"] for item in results if item["status"] == 409} == {"out_of_stock"}
    assert sum(r.json()["created"] for r in responses) == UNITS
    assert sum(r.json()["failed"] for r in responses) == 2 * BUYERS - UNITS
    # Within one batch, orders resolve in order: a refused first order never precedes a
    # created second one (stock only goes down during the race).
    for r in responses:
        first, second = r.json()["results"]
        assert not (first["status"] == 409 and second["status"] == 201), r
    ids = [item["order"]["id"] for item in results if item["status"] == 201]
    assert len(set(ids)) == UNITS
    _assert_sold_out(shop, sku, world.a)


def test_one_idempotency_key_sent_20_times_at_once_creates_one_order(
    server: Server, world: World
) -> None:
    shop = world.shop
    sku = shop.sku({world.a: 100})
    buyer = server.token("buyer", unique("idem"))
    key = unique("key")
    body = json.dumps(order_body([(sku, 2)], world.north)).encode()
    call = Call("POST", "/v1/orders", buyer, body=body, headers={"Idempotency-Key": key})
    responses = server.concurrently([call] * 20)

    statuses = Counter(r.status for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1, statuses
    assert {r.error_code for r in responses if r.status == 409} <= {"idempotency_key_in_use"}
    created = [r for r in responses if r.status == 201]
    assert len({r.body for r in created}) == 1, "every 201 carries the same body"
    originals = [r for r in created if r.headers.get("idempotent-replayed") != "true"]
    assert len(originals) == 1, "exactly one response is not a replay"

    order = created[0].json()
    assert [o["id"] for o in shop.all_orders(buyer)] == [order["id"]]
    assert shop.totals(sku)["reserved"] == 2
    # Later retries replay the same response.
    again = server.call(
        "POST", "/v1/orders", token=buyer, body=body, headers={"Idempotency-Key": key}
    )
    assert again.status == 201, again
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.body == created[0].body
    assert shop.totals(sku)["reserved"] == 2


def test_a_key_reused_with_another_request_is_422(server: Server, world: World) -> None:
    shop = world.shop
    sku = shop.sku({world.a: 100})
    buyer = server.token("buyer", unique("reuse"))
    key = {"Idempotency-Key": unique("key")}
    first = shop.order(buyer, [(sku, 1)], world.north, headers=key)
    assert first.status == 201, first
    other_body = shop.order(buyer, [(sku, 2)], world.north, headers=key)
    assert other_body.status == 422, other_body
    assert other_body.error_code == "idempotency_key_reused"
    other_path = server.call(
        "POST",
        "/v1/orders/batch",
        token=buyer,
        json={"orders": [order_body([(sku, 1)], world.north)]},
        headers=key,
    )
    assert other_path.status == 422, other_path
    assert other_path.error_code == "idempotency_key_reused"
    assert [o["id"] for o in shop.all_orders(buyer)] == [first.json()["id"]]
    assert shop.totals(sku)["reserved"] == 1
    # Keys outside 1..255 printable characters are refused.
    for bad in ("x" * 256, "tab\there"):
        resp = shop.order(buyer, [(sku, 1)], world.north, headers={"Idempotency-Key": bad})
        assert resp.status == 422, resp
    assert shop.totals(sku)["reserved"] == 1


def test_a_key_replays_the_same_request_re_encoded(server: Server, world: World) -> None:
    """Stripe compares a retried request's parameters, not its bytes: keys reordered and
    re-indented under the same Idempotency-Key replay the first answer (single and batch)."""
    shop = world.shop
    sku = shop.sku({world.a: 100})
    buyer = server.token("buyer", unique("reencode"))
    order = order_body([(sku, 1)], world.north)
    for path, payload in (("/v1/orders", order), ("/v1/orders/batch", {"orders": [order]})):
        key = {"Idempotency-Key": unique("key")}
        compact = json.dumps(payload, separators=(",", ":")).encode()
        first = server.call("POST", path, token=buyer, body=compact, headers=key)
        assert first.status in (200, 201), first
        reordered = json.dumps(_reversed_keys(payload), indent=4).encode()
        assert reordered != compact
        again = server.call("POST", path, token=buyer, body=reordered, headers=key)
        assert again.status == first.status, again
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.body == first.body
        # A changed parameter is still another request.
        changed = json.dumps(_reversed_keys(payload) | {"extra": 1}).encode()
        other = server.call("POST", path, token=buyer, body=changed, headers=key)
        assert other.status == 422, other
        assert other.error_code == "idempotency_key_reused"
    assert len(shop.all_orders(buyer)) == 2
    assert shop.totals(sku)["reserved"] == 2


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_the_key_survives_a_restart(launch: Launch) -> None:
    srv = launch()
    world = build_world(srv)
    shop = world.shop
    sku = shop.sku({world.a: 10})
    buyer = srv.token("buyer", "restart-idem")
    key = {"Idempotency-Key": "survivor"}
    first = shop.order(buyer, [(sku, 3)], world.north, headers=key)
    assert first.status == 201, first
    refused = shop.order(buyer, [(sku, 100)], world.north, headers={"Idempotency-Key": "oos"})
    assert refused.status == 409, refused

    srv.restart()

    replay = shop.order(buyer, [(sku, 3)], world.north, headers=key)
    assert replay.status == 201, replay
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.body == first.body
    refused_again = shop.order(buyer, [(sku, 100)], world.north, headers={"Idempotency-Key": "oos"})
    assert refused_again.status == 409
    assert refused_again.headers.get("idempotent-replayed") == "true"
    assert refused_again.body == refused.body
    assert shop.order(buyer, [(sku, 1)], world.north, headers=key).status == 422
    assert [o["id"] for o in shop.all_orders(buyer)] == [first.json()["id"]]
    assert shop.totals(sku) == {"on_hand": 10, "available": 7, "reserved": 3, "sold": 0}


def test_orders_refused_while_the_write_path_recovers_are_not_stored(launch: Launch) -> None:
    """A request told 5xx must leave no trace: not in the store, not holding stock, and the
    server must still restart. On PostgreSQL the server's connections are cut while orders pour
    in, so commits fail and the server rebuilds its core from the store; on SQLite nothing is
    cut and this only checks the bookkeeping."""
    srv = launch()
    world = build_world(srv)
    shop = world.shop
    sku = shop.sku({world.a: 1000})
    tag = uuid.uuid4().hex[:6]
    body = order_body([(sku, 1)], world.north)
    calls = [
        Call("POST", "/v1/orders", srv.token("buyer", f"r-{tag}-{i}"), body) for i in range(300)
    ]
    responses = srv.concurrently(
        calls, connections=20, meanwhile=srv.cut_database_connections, after_s=0.05
    )
    statuses = Counter(r.status for r in responses)
    assert set(statuses) <= {201, 503}, statuses
    acked = {r.json()["id"] for r in responses if r.status == 201}
    # Once recovered, the server takes orders again (recovery may take a few seconds).
    deadline = time.monotonic() + 15
    while True:
        last = shop.order(srv.token("buyer", unique("after")), [(sku, 1)], world.north)
        if last.status == 201:
            acked.add(last.json()["id"])
            break
        assert last.status == 503, last
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.1)

    every = shop.all_orders(srv.admin())
    stored = {o["id"] for o in every}
    answers = {f"r-{tag}-{i}": r for i, r in enumerate(responses)}
    refused_but_stored = [
        (o["buyer"], answers[o["buyer"]].body.decode()) for o in every if o["id"] not in acked
    ]
    assert not refused_but_stored, (
        f"{len(refused_but_stored)} orders are stored though their requests were refused: "
        f"{refused_but_stored}"
    )
    assert acked - stored == set(), f"{len(acked - stored)} acknowledged orders are missing"
    assert shop.totals(sku)["reserved"] == len(acked)

    srv.restart()
    assert {o["id"] for o in shop.all_orders(srv.admin())} == acked
    assert shop.totals(sku) == {
        "on_hand": 1000,
        "available": 1000 - len(acked),
        "reserved": len(acked),
        "sold": 0,
    }


def test_concurrent_cancels_of_one_order_return_the_units_once(
    server: Server, world: World
) -> None:
    shop = world.shop
    sku = shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("cancel-race"))
    order = shop.order(buyer, [(sku, 4)], world.north).json()
    # Distinct keys: each request runs.
    calls = [
        Call(
            "POST",
            f"/v1/orders/{order['id']}/cancel",
            buyer,
            headers={"Idempotency-Key": unique("c")},
        )
        for _ in range(20)
    ]
    responses = server.concurrently(calls)
    statuses = Counter(r.status for r in responses)
    assert statuses == {200: 1, 409: 19}, statuses
    assert {r.error_code for r in responses if r.status == 409} == {"invalid_state"}
    # Each refusal names the state the order really ends in, never "pending_payment" (a cancel
    # that lost the race waits for the winner's commit before it answers).
    refused = {r.json()["error"]["details"]["status"] for r in responses if r.status == 409}
    assert refused == {"cancelled"}, refused
    assert shop.totals(sku) == {"on_hand": 10, "available": 10, "reserved": 0, "sold": 0}
    assert shop.get_order(order["id"])["status"] == "cancelled"


def test_sigterm_under_load_keeps_every_acknowledged_order(launch: Launch) -> None:
    """Graceful shutdown while orders pour in: the process exits by itself (code 0), every
    201 is stored after the restart, nothing unacknowledged holds stock beyond what is stored."""
    srv = launch()
    world = build_world(srv)
    shop = world.shop
    sku = shop.sku({world.a: 100_000})
    body = json.dumps(order_body([(sku, 1)], world.north)).encode()
    tokens = [srv.token("buyer", f"term-{i}") for i in range(300)]
    proc = srv.proc.proc
    assert proc is not None

    first_created = asyncio.Event()

    async def one(session: aiohttp.ClientSession, token: str, delay: float) -> str | None:
        """The created order's id, or None if refused or cut off."""
        await asyncio.sleep(delay)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            async with session.post(srv.url + "/v1/orders", data=body, headers=headers) as r:
                payload = await r.read()
                assert r.status in (201, 503), (r.status, payload)
                if r.status != 201:
                    return None
                first_created.set()
                return str(json.loads(payload)["id"])
        except aiohttp.ClientError:
            return None

    async def load() -> list[str | None]:
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [
                asyncio.ensure_future(one(session, t, i * 0.0005)) for i, t in enumerate(tokens)
            ]
            # Signal mid-load: once orders are being acknowledged, with most still to come.
            await asyncio.wait_for(first_created.wait(), timeout=30)
            await asyncio.sleep(0.03)
            proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks))

    results = asyncio.run(load())
    assert proc.wait(timeout=14) == 0
    acked = {r for r in results if r is not None}
    assert acked, "no order was created before the signal; the test proves nothing"

    srv.start()
    stored = {o["id"] for o in shop.all_orders(srv.admin())}
    assert acked <= stored
    assert shop.totals(sku)["reserved"] == len(stored)


def test_stock_adjustments_racing_orders_never_go_negative_and_survive_a_restart(
    launch: Launch,
) -> None:
    srv = launch()
    world = build_world(srv)
    shop = world.shop
    merchant = world.merchant_x
    sku = shop.sku({world.a: 100}, token=merchant)
    tag = uuid.uuid4().hex[:6]
    order = order_body([(sku, 1)], world.north)
    path = f"/v1/skus/{sku}/stock"
    calls: list[Call] = []
    for i in range(150):
        calls.append(Call("POST", "/v1/orders", srv.token("buyer", f"adj-{tag}-{i}"), order))
        if i % 10 == 0:
            calls.append(Call("POST", path, merchant, {"warehouse": world.a, "delta": -10}))
        if i % 30 == 0:
            calls.append(Call("POST", path, merchant, {"warehouse": world.a, "delta": 5}))
    responses = srv.concurrently(calls, connections=50)

    placed = removed = added = 0
    for call, resp in zip(calls, responses, strict=True):
        if call.path == "/v1/orders":
            assert resp.status in (201, 409), resp
            placed += resp.status == 201
        else:
            assert resp.status in (200, 422), resp
            if resp.status == 200:
                removed += call.json["delta"] < 0
                added += call.json["delta"] > 0
            assert resp.status == 200 or call.json["delta"] < 0, resp
    on_hand = 100 - 10 * removed + 5 * added
    expected = {
        "on_hand": on_hand,
        "available": on_hand - placed,
        "reserved": placed,
        "sold": 0,
    }
    assert expected["available"] >= 0
    assert shop.totals(sku) == expected
    srv.restart()
    assert shop.totals(sku) == expected
    assert shop.by_warehouse(sku) == {world.a: expected}


def test_an_order_refused_with_5xx_is_not_stored_even_if_the_commit_reply_was_lost(
    backend: str, tmp_path: Path
) -> None:
    """The database commits the order's transaction, then the connection dies before its
    reply reaches the server. Answering 503 "nothing was acknowledged, retry" is then wrong:
    the order exists and holds stock, and the buyer's retry makes a second one. The server
    must find out (after rebuilding, the order is in the store) and answer 201, or not leave
    the order there."""
    if backend == "sqlite":
        pytest.skip("SQLite runs in-process: there is no connection whose reply could be lost")
    cluster = urlsplit(postgres_dsn())
    upstream = (cluster.hostname or "127.0.0.1", cluster.port or 5432)
    with (
        CommitReplyDropper(upstream) as relay,
        running_server(backend, tmp_path / "s", dsn_for_server=relay.dsn) as srv,
    ):
        world = build_world(srv)
        shop = world.shop
        sku = shop.sku({world.a: 10})
        buyer = srv.token("buyer", "unlucky")
        relay.arm()
        resp = shop.order(buyer, [(sku, 2)], world.north)
        assert relay.dropped.is_set(), "the order's COMMIT never went through the relay"
        deadline = time.monotonic() + 15
        while srv.call("GET", "/readyz").status != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.1)
        stored = shop.all_orders(buyer)
        if resp.status == 201:
            assert [o["id"] for o in stored] == [resp.json()["id"]]
            assert shop.totals(sku)["reserved"] == 2
        else:
            assert resp.status == 503, resp
            assert stored == [], f"refused with {resp}, yet stored: {stored}"
            assert shop.totals(sku)["reserved"] == 0
