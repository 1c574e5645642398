"""The carrier sandbox's application factory."""

from aiohttp import web

from sandbox.carrier import routes
from sandbox.carrier.carrier import Carrier
from sandbox.carrier.config import CarrierFaults, CarrierSettings
from sandbox.carrier.keys import CARRIER
from sandbox.faults import FaultState
from sandbox.instance import Instance, base_app
from sandbox.webhooks import RetryPolicy, WebhookSender


def create_app(
    *,
    name: str = "carrier",
    secret: str,
    webhook_url: str | None = None,
    api_key: str | None = None,
    settings: CarrierSettings | None = None,
    faults: CarrierFaults | None = None,
    retry: RetryPolicy | None = None,
) -> web.Application:
    """One carrier called ``name``: tracking events to ``webhook_url`` signed with ``secret``;
    API calls need ``Bearer <api_key>`` when it is set."""
    fault_state = FaultState(faults or CarrierFaults())
    instance = Instance(
        name=name,
        faults=fault_state,
        sender=WebhookSender(name, secret, webhook_url, fault_state, retry),
        api_key=api_key,
    )
    app = base_app(instance)
    app[CARRIER] = Carrier(instance, settings or CarrierSettings())
    app.add_routes(routes.routes)
    return app
