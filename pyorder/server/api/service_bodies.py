"""Response body of the service's own routes (``pyorder.server.api.service``): liveness and
readiness."""

import msgspec


class HealthOut(msgspec.Struct):
    status: str
    """``ok`` (``/healthz``); ``ready``, ``starting`` or ``draining`` (``/readyz``)."""
