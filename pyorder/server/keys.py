"""Typed application keys shared by the server's modules."""

from aiohttp import web

from pyorder.auth import TokenIssuer
from pyorder.platform import Platform
from pyorder.server.admission import Admission
from pyorder.server.drain import DrainState
from pyorder.server.idempotency import Idempotency
from pyorder.server.metrics import Metrics

PLATFORM = web.AppKey("platform", Platform)
IDEMPOTENCY = web.AppKey("idempotency", Idempotency)
METRICS = web.AppKey("metrics", Metrics)
ISSUER = web.AppKey("issuer", TokenIssuer)
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)
ADMISSION = web.AppKey("admission", Admission)
DRAIN = web.AppKey("drain", DrainState)
"""Whether the node is draining before it stops (``pyorder.server.drain``)."""
METRICS_TOKEN = web.AppKey("metrics_token", str)
OPENAPI = web.AppKey("openapi", bytes)
"""The OpenAPI document (JSON) of the app's routes, generated when it is created."""
