"""Forwarding a request to the node that serves it (``pyorder.server.forwarding``), against a
real aiohttp server on loopback standing in for the owner node: what is sent on and passed
back, the 503s (no live node, a request already forwarded once, a node that does not answer),
and how each locator finds the node (order id in the path, a provider's or carrier's webhook
body, a return's order)."""

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from pyorder.ids import OrderIdGenerator
from pyorder.server.forwarding import (
    FORWARDED_BY,
    NOBODY,
    Forwarder,
    by_carrier_event,
    by_order,
    by_payment_event,
    by_return,
    forwarding,
)
from pyorder.storage.base import Store
from tests.logistics.lib import tracking_event
from tests.payments.lib import intent_event


class FakeStore:
    """What a forwarder reads of the store: nodes' addresses, the leader, returns' orders."""

    def __init__(self, urls: dict[int, str], returns: dict[int, int] | None = None) -> None:
        self.urls = urls
        self.returns = returns or {}
        self.url_reads = 0

    async def peer_url(self, node: int) -> str | None:
        self.url_reads += 1
        return self.urls.get(node)

    async def leader_node(self) -> int | None:
        return 2

    async def order_of_return(self, return_id: int) -> int | None:
        return self.returns.get(return_id)


def _forwarder(store: FakeStore, node: int = 0) -> Forwarder:
    return Forwarder(cast(Store, store), lambda: node, timeout_s=5)


def _order_id(node: int) -> int:
    return int(OrderIdGenerator(node).next_ids(1)[0])


async def _owner(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def _url(runner: web.AppRunner) -> str:
    port = runner.addresses[0][1]
    return f"http://127.0.0.1:{port}"


def test_a_request_is_sent_on_as_it_came_and_its_answer_passed_back() -> None:
    seen: dict[str, Any] = {}

    async def owner(request: web.Request) -> web.Response:
        seen.update(
            method=request.method,
            path=request.path_qs,
            body=await request.read(),
            headers=dict(request.headers),
        )
        resp = web.json_response({"ok": True}, status=409)
        resp.headers["Retry-After"] = "3"
        return resp

    async def body() -> None:
        runner = await _owner(owner)
        forwarder = _forwarder(FakeStore({7: _url(runner)}), node=1)

        async def front_handler(request: web.Request) -> web.StreamResponse:
            return await forwarder.forward(request, 7)

        front, client = await _front(front_handler)
        try:
            async with client.post(
                "/v1/orders/5/payments?x=1",
                data=b'{"method":"card"}',
                headers={
                    "Authorization": "Bearer t",
                    "Idempotency-Key": "k1",
                    "Provider-Signature": "t=1,v1=ab",
                    "Content-Type": "application/json",
                },
            ) as resp:
                assert (resp.status, await resp.json()) == (409, {"ok": True})
                assert resp.headers["Retry-After"] == "3"
                assert resp.headers["Content-Type"].startswith("application/json")
            assert forwarder.forwarded == {7: 1}
        finally:
            await client.close()
            await front.cleanup()
            await forwarder.close()
            await runner.cleanup()
        assert (seen["method"], seen["path"], seen["body"]) == (
            "POST",
            "/v1/orders/5/payments?x=1",
            b'{"method":"card"}',
        )
        headers = seen["headers"]
        assert headers["Authorization"] == "Bearer t"
        assert headers["Idempotency-Key"] == "k1"
        assert headers["Provider-Signature"] == "t=1,v1=ab"
        assert headers[FORWARDED_BY] == "1"

    asyncio.run(body())


async def _front(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, aiohttp.ClientSession]:
    """A real server on loopback running ``handler`` for every request, and a client for it."""
    runner = await _owner(handler)
    return runner, aiohttp.ClientSession(_url(runner))


def test_no_live_node_a_second_hop_and_a_silent_node_are_answered_503() -> None:
    async def body() -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{s.getsockname()[1]}"
        store = FakeStore({3: closed})
        forwarder = _forwarder(store)
        try:
            for node, hop in ((4, False), (NOBODY, False), (3, True), (3, False)):
                headers = {FORWARDED_BY: "9"} if hop else {}
                request = make_mocked_request("GET", "/v1/orders/1/payment", headers=headers)
                resp = await forwarder.forward(request, node)
                assert isinstance(resp, web.Response)
                assert resp.status == 503, node
                assert resp.headers["Retry-After"] == "1"
                error = json.loads(cast(bytes, resp.body))["error"]
                assert error["code"] == "order_node_unavailable"
                assert error["details"] == {"node": node}
            # The address that failed is read again next time, not kept for its 2 s.
            reads = store.url_reads
            await forwarder.url_of(3)
            assert store.url_reads == reads + 1
            assert forwarder.unavailable == {4: 1, NOBODY: 1, 3: 2}
            assert forwarder.forwarded == {}
        finally:
            await forwarder.close()

    asyncio.run(body())


def test_the_locators_find_the_node_of_an_orders_request() -> None:
    async def body() -> None:
        order_on_5 = _order_id(5)
        forwarder = _forwarder(FakeStore({}, returns={41: order_on_5}))
        locators = {
            "order": by_order,
            "return": by_return,
            "payment": by_payment_event,
            "carrier": by_carrier_event,
        }

        async def locate(request: web.Request) -> web.Response:
            found = await locators[request.query["by"]](request, forwarder)
            return web.json_response({"node": found})

        app_routes = [
            web.post("/orders/{order_id}", locate),
            web.post("/returns/{return_id}", locate),
            web.post("/hook", locate),
        ]
        app = web.Application()
        app.add_routes(app_routes)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        client = aiohttp.ClientSession(_url(runner))

        async def node(path: str, by: str, data: object = b"") -> int | None:
            raw = data if isinstance(data, bytes) else json.dumps(data).encode()
            async with client.post(path, params={"by": by}, data=raw) as resp:
                assert resp.status == 200, await resp.text()
                found = (await resp.json())["node"]
                return None if found is None else int(found)

        try:
            assert await node(f"/orders/{order_on_5}", "order") == 5
            assert await node("/orders/x1", "order") is None
            assert await node("/returns/41", "return") == 5
            assert await node("/returns/42", "return") is None

            intent = intent_event(str(order_on_5), 1, "succeeded", event_id="evt_1")
            assert await node("/hook", "payment", intent) == 5
            assert await node("/hook", "payment", b"not json") is None
            foreign = intent_event("abc", 1, "succeeded", event_id="evt_2")
            assert await node("/hook", "payment", foreign) is None

            scan = tracking_event(str(order_on_5), 1, 1, "in_transit", event_id="evt_3")
            assert await node("/hook", "carrier", scan) == 5
            back = tracking_event("0", 1, 1, "in_transit", event_id="evt_4")
            back["data"]["object"]["reference"] = "return-41"
            assert await node("/hook", "carrier", back) == 5
        finally:
            await client.close()
            await runner.cleanup()
            await forwarder.close()

    asyncio.run(body())


def test_a_routed_handler_runs_here_for_its_own_orders_and_forwards_the_others() -> None:
    async def body() -> None:
        ran: list[str] = []

        async def handler(request: web.Request) -> web.Response:
            ran.append(request.match_info["order_id"])
            return web.Response(text="here")

        mine, theirs = _order_id(0), _order_id(6)
        forwarder = _forwarder(FakeStore({}), node=0)
        serve = forwarding(handler, by_order, forwarder)
        try:
            here = await serve(make_mocked_request("GET", "/", match_info={"order_id": str(mine)}))
            there = await serve(
                make_mocked_request("GET", "/", match_info={"order_id": str(theirs)})
            )
        finally:
            await forwarder.close()
        assert ran == [str(mine)]
        assert cast(web.Response, here).text == "here"
        assert there.status == 503  # node 6 is not running
        assert forwarder.unavailable == {6: 1}

    asyncio.run(body())
