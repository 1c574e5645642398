"""The aiohttp application factory."""

import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from pyorder.auth import Role, TokenIssuer, load_or_create_secret
from pyorder.platform import Config, Platform
from server import (
    catalog_routes,
    logistics_routes,
    order_routes,
    payment_routes,
    return_routes,
    webhook_routes,
)
from server.admission import Admission
from server.errors import error_response
from server.handling import handled
from server.idempotency import Idempotency
from server.keys import (
    ADMISSION,
    IDEMPOTENCY,
    ISSUER,
    MAX_BODY_BYTES,
    METRICS,
    METRICS_TOKEN,
    OPENAPI,
    PLATFORM,
)
from server.metrics import Metrics
from server.openapi import document
from server.operations import AUTH_ERRORS, operation, undocumented
from server.requests import json_response, principal
from server.schemas import HealthOut

DEFAULT_MAX_BODY = 2 * 1024 * 1024


def create_app(
    config: Config,
    *,
    token_secret: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    admission: Admission | None = None,
    metrics_token: str | None = None,
) -> web.Application:
    """The pyorder HTTP service over a ``Platform`` built from ``config``.

    ``token_secret`` defaults to the one kept in ``config.data_dir`` (created on first start).
    ``admission`` bounds the placing requests in flight (``server.admission``; default
    ``Admission()``). ``/metrics`` answers an admin's bearer token or ``Bearer
    <metrics_token>``; ``metrics_app`` serves it on a listener of its own.
    """
    platform = Platform(config)
    app = web.Application(client_max_size=max_body_bytes)
    app[MAX_BODY_BYTES] = max_body_bytes
    app[ADMISSION] = admission = admission or Admission()
    app[METRICS_TOKEN] = metrics_token or ""
    metrics = Metrics(platform, admission)
    app[PLATFORM] = platform
    app[IDEMPOTENCY] = Idempotency(platform)
    app[METRICS] = metrics
    app[ISSUER] = TokenIssuer(token_secret or load_or_create_secret(Path(config.data_dir)))
    app.add_routes(handled(metrics.http, api_routes()))
    # Generated here, so that a route declaring no operation fails the app's creation.
    app[OPENAPI] = msgspec.json.encode(document(app.router.routes()))
    app.cleanup_ctx.append(_run_platform)
    return app


def api_routes() -> list[web.AbstractRouteDef]:
    """Every route of the API, its handler not wrapped yet (``server.handling``)."""
    return [
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


def api_router() -> web.UrlDispatcher:
    """A router of ``api_routes`` alone, without an app (for tools and tests)."""
    router = web.UrlDispatcher()
    router.add_routes(api_routes())
    return router


def api_document() -> dict[str, Any]:
    """The OpenAPI document of ``api_routes``, without an app (for tools and tests)."""
    return document(api_router().routes())


async def _run_platform(app: web.Application) -> AsyncIterator[None]:
    platform = app[PLATFORM]
    await platform.start()
    yield
    # aiohttp has stopped accepting and finished in-flight requests: flush and close.
    await platform.stop()


@operation("Liveness", 200, HealthOut, auth=False)
async def healthz(request: web.Request) -> web.Response:
    return json_response(HealthOut("ok"))


@operation(
    "Readiness: the store is open and the core rebuilt", 200, HealthOut, errors=(503,), auth=False
)
async def readyz(request: web.Request) -> web.Response:
    ready = request.app[PLATFORM].ready
    return json_response(HealthOut("ready" if ready else "starting"), 200 if ready else 503)


@operation(
    "Prometheus metrics (admin, or 'Bearer <--metrics-token>'; docs/server.md)",
    200,
    None,
    errors=AUTH_ERRORS,
    text="text/plain",
)
async def render_metrics(request: web.Request) -> web.Response:
    """Prometheus text for an admin or the holder of the metrics token; 401/403 otherwise."""
    if not _metrics_token_matches(request):
        principal(request).require(Role.ADMIN)
    return request.app[METRICS].render()


def _metrics_token_matches(request: web.Request) -> bool:
    token = request.app[METRICS_TOKEN]
    if not token:
        return False
    given = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())


def metrics_app(api: web.Application, *, token: str | None) -> web.Application:
    """``/metrics`` of ``api`` alone, for a listener of its own (``--metrics-listen``): open
    to whoever reaches it when ``token`` is None (bind it to a private address), else only to
    ``Bearer <token>``."""
    app = web.Application()
    metrics = api[METRICS]

    async def serve(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()
        ):
            resp = error_response(401, "unauthorized", "send 'Authorization: Bearer <token>'")
            resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        return metrics.render()

    app.router.add_get("/metrics", serve)
    return app


@undocumented("the document itself")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
