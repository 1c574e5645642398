"""HTTP routes of the service itself: liveness (``/healthz``), readiness (``/readyz``) and
Prometheus metrics (``/metrics``, for an admin or the holder of the metrics token)."""

import hmac

from aiohttp import web

from pyorder.auth import Role
from pyorder.server.api.service_bodies import HealthOut
from pyorder.server.keys import DRAIN, METRICS, METRICS_TOKEN, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, operation
from pyorder.server.requests import json_response, principal

routes = web.RouteTableDef()


@routes.get("/healthz")
@operation("Liveness", 200, HealthOut, auth=False)
async def healthz(request: web.Request) -> web.Response:
    return json_response(HealthOut("ok"))


@routes.get("/readyz")
@operation(
    "Readiness: the store is open, the core rebuilt and the node not draining before a stop"
    " (503 with status 'starting' or 'draining' otherwise)",
    200,
    HealthOut,
    errors=(503,),
    auth=False,
)
async def readyz(request: web.Request) -> web.Response:
    if request.app[DRAIN].draining:  # stopping: the balancer must send elsewhere
        return json_response(HealthOut("draining"), 503)
    ready = request.app[PLATFORM].ready
    return json_response(HealthOut("ready" if ready else "starting"), 200 if ready else 503)


@routes.get("/metrics")
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
    return await request.app[METRICS].render()


def _metrics_token_matches(request: web.Request) -> bool:
    token = request.app[METRICS_TOKEN]
    if not token:
        return False
    given = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())
