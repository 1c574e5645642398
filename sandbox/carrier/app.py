"""The carrier sandbox's application factory."""

from aiohttp import web

from sandbox.carrier import routes
from sandbox.carrier.carrier import Carrier
from sandbox.carrier.config import CarrierFaults, CarrierSettings
from sandbox.carrier.keys import CARRIER
from sandbox.idempotency import DEFAULT_RETENTION_S
from sandbox.instance import base_app, new_instance
from sandbox.webhooks import RetryPolicy


def create_app(
    *,
    name: str = "carrier",
    secret: str,
    webhook_url: str | None = None,
    api_key: str | None = None,
    settings: CarrierSettings | None = None,
    faults: CarrierFaults | None = None,
    retry: RetryPolicy | None = None,
    idempotency_retention_s: float = DEFAULT_RETENTION_S,
) -> web.Application:
    """One carrier called ``name``: tracking events to ``webhook_url`` signed with ``secret``;
    API calls need ``Bearer <api_key>`` when it is set; first answers to Idempotency-Keys are
    replayed for ``idempotency_retention_s`` seconds."""
    instance = new_instance(
        name=name,
        secret=secret,
        webhook_url=webhook_url,
        api_key=api_key,
        faults=faults or CarrierFaults(),
        retry=retry,
        idempotency_retention_s=idempotency_retention_s,
    )
    app = base_app(instance)
    app[CARRIER] = Carrier(instance, settings or CarrierSettings())
    app.add_routes(routes.routes)
    return app
