"""The baseline of the HTTP benchmark: a bare aiohttp + uvloop + orjson POST handler.

It parses the same order JSON body as ``POST /v1/orders`` (and the batch body on
``POST /v1/orders/batch``) and answers a small JSON object: no auth, no validation, no
inventory, no storage. ``loadtest/http_bench.py`` measures it beside pyorder in the same run.

    python loadtest/bare_server.py --port 8090
"""

import argparse
import asyncio
import itertools

import orjson
import uvloop
from aiohttp import web

_ids = itertools.count(1)


async def place(request: web.Request) -> web.Response:
    order = orjson.loads(await request.read())
    body = orjson.dumps(
        {"id": str(next(_ids)), "status": "pending_payment", "lines": len(order["lines"])}
    )
    return web.Response(status=201, body=body, content_type="application/json")


async def place_batch(request: web.Request) -> web.Response:
    orders = orjson.loads(await request.read())["orders"]
    results = [{"index": i, "status": 201, "id": str(next(_ids))} for i in range(len(orders))]
    body = orjson.dumps({"created": len(results), "failed": 0, "results": results})
    return web.Response(body=body, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def app() -> web.Application:
    application = web.Application(client_max_size=8 * 1024 * 1024)
    application.router.add_post("/v1/orders", place)
    application.router.add_post("/v1/orders/batch", place_batch)
    application.router.add_get("/healthz", healthz)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
