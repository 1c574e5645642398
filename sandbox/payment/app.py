"""The payment sandbox's application factory."""

from aiohttp import web

from sandbox.faults import FaultState
from sandbox.instance import Instance, base_app
from sandbox.payment import routes
from sandbox.payment.config import PaymentFaults, PaymentSettings
from sandbox.payment.keys import PROVIDER
from sandbox.payment.provider import PaymentProvider
from sandbox.webhooks import RetryPolicy, WebhookSender


def create_app(
    *,
    name: str = "payments",
    secret: str,
    webhook_url: str | None = None,
    api_key: str | None = None,
    settings: PaymentSettings | None = None,
    faults: PaymentFaults | None = None,
    retry: RetryPolicy | None = None,
) -> web.Application:
    """One payment provider called ``name``: webhooks to ``webhook_url`` signed with ``secret``;
    API calls need ``Bearer <api_key>`` when it is set (the buyer's authenticate step never)."""
    fault_state = FaultState(faults or PaymentFaults())
    instance = Instance(
        name=name,
        faults=fault_state,
        sender=WebhookSender(name, secret, webhook_url, fault_state, retry),
        api_key=api_key,
        public_paths=("/authenticate",),
    )
    app = base_app(instance)
    app[PROVIDER] = PaymentProvider(instance, settings or PaymentSettings())
    app.add_routes(routes.routes)
    return app
