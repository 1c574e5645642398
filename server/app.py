"""The aiohttp application factory."""

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from aiohttp import web

from pyorder.auth import TokenIssuer, load_or_create_secret
from pyorder.platform import Config, Platform
from server import (
    catalog_routes,
    logistics_routes,
    order_routes,
    payment_routes,
    return_routes,
    webhook_routes,
)
from server.handling import handled
from server.idempotency import Idempotency
from server.keys import IDEMPOTENCY, ISSUER, MAX_BODY_BYTES, METRICS, PLATFORM
from server.metrics import Metrics
from server.openapi import document
from server.requests import json_response
from server.schemas import HealthOut

DEFAULT_MAX_BODY = 2 * 1024 * 1024


def create_app(
    config: Config,
    *,
    token_secret: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
) -> web.Application:
    """The pyorder HTTP service over a ``Platform`` built from ``config``.

    ``token_secret`` defaults to the one kept in ``config.data_dir`` (created on first start).
    """
    platform = Platform(config)
    app = web.Application(client_max_size=max_body_bytes)
    app[MAX_BODY_BYTES] = max_body_bytes
    metrics = Metrics(platform)
    app[PLATFORM] = platform
    app[IDEMPOTENCY] = Idempotency(platform)
    app[METRICS] = metrics
    app[ISSUER] = TokenIssuer(token_secret or load_or_create_secret(Path(config.data_dir)))
    routes = [
        *catalog_routes.routes,
        *order_routes.routes,
        *payment_routes.routes,
        *logistics_routes.routes,
        *return_routes.routes,
        *webhook_routes.routes,
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", render_metrics),
        web.get("/v1/openapi.json", openapi),
    ]
    app.add_routes(handled(metrics.http, routes))
    app.cleanup_ctx.append(_run_platform)
    return app


async def _run_platform(app: web.Application) -> AsyncIterator[None]:
    platform = app[PLATFORM]
    await platform.start()
    yield
    # aiohttp has stopped accepting and finished in-flight requests: flush and close.
    await platform.stop()


async def healthz(request: web.Request) -> web.Response:
    return json_response(HealthOut("ok"))


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[PLATFORM].ready
    return json_response(HealthOut("ready" if ready else "starting"), 200 if ready else 503)


async def render_metrics(request: web.Request) -> web.Response:
    return request.app[METRICS].render()


@functools.cache
def _openapi_body() -> bytes:
    return msgspec.json.encode(document())


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_openapi_body(), content_type="application/json")
