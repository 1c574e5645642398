"""The aiohttp application factory."""

import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from aiohttp import web

from pyorder.auth import TokenIssuer, load_or_create_secret
from pyorder.platform import Config, Platform
from pyorder.server import api
from pyorder.server.admission import Admission
from pyorder.server.drain import DrainState
from pyorder.server.errors import error_response
from pyorder.server.forwarding import Forwarder, ForwardStats
from pyorder.server.handling import handled
from pyorder.server.idempotency import Idempotency
from pyorder.server.keys import (
    ADMISSION,
    DRAIN,
    IDEMPOTENCY,
    ISSUER,
    MAX_BODY_BYTES,
    METRICS,
    METRICS_TOKEN,
    OPENAPI,
    PLATFORM,
)
from pyorder.server.metrics import Metrics
from pyorder.server.openapi import document

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
    ``admission`` bounds the placing requests in flight (``pyorder.server.admission``; default
    ``Admission()``). ``/metrics`` answers an admin's bearer token or ``Bearer
    <metrics_token>``; ``metrics_app`` serves it on a listener of its own.
    """
    platform = Platform(config)
    app = web.Application(client_max_size=max_body_bytes)
    app[MAX_BODY_BYTES] = max_body_bytes
    app[ADMISSION] = admission = admission or Admission()
    app[METRICS_TOKEN] = metrics_token or ""
    app[DRAIN] = drain = DrainState()
    metrics = Metrics(platform, admission, drain)
    app[PLATFORM] = platform
    app[IDEMPOTENCY] = Idempotency(platform)
    app[METRICS] = metrics
    app[ISSUER] = TokenIssuer(token_secret or load_or_create_secret(Path(config.data_dir)))
    forwarder = None
    if config.cluster:  # an order's requests are served by its node (docs/scale-out.md)
        forwarder = Forwarder(platform.store, lambda: platform.claim.node, lambda: platform.serving)
        metrics.registry.register(ForwardStats(forwarder))
        app.on_cleanup.append(lambda _: forwarder.close())
    app.add_routes(handled(metrics.http, api.routes(forwarder)))
    # Generated here, so that a route declaring no operation fails the app's creation.
    app[OPENAPI] = msgspec.json.encode(document(app.router.routes()))
    app.cleanup_ctx.append(_run_platform)
    return app


async def _run_platform(app: web.Application) -> AsyncIterator[None]:
    platform = app[PLATFORM]
    await platform.start()
    yield
    # aiohttp has stopped accepting and finished in-flight requests: flush and close.
    await platform.stop()


def metrics_app(main: web.Application, *, token: str | None) -> web.Application:
    """``/metrics`` of ``main`` alone, for a listener of its own (``--metrics-listen``): open
    to whoever reaches it when ``token`` is None (bind it to a private address), else only to
    ``Bearer <token>``."""
    app = web.Application()
    metrics = main[METRICS]

    async def serve(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()
        ):
            resp = error_response(401, "unauthorized", "send 'Authorization: Bearer <token>'")
            resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        return await metrics.render()

    app.router.add_get("/metrics", serve)
    return app
