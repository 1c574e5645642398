"""The payment sandbox's application factory."""

from aiohttp import web

from sandbox.idempotency import DEFAULT_RETENTION_S
from sandbox.instance import base_app, new_instance
from sandbox.payment import routes
from sandbox.payment.config import PaymentFaults, PaymentSettings
from sandbox.payment.keys import PROVIDER
from sandbox.payment.provider import PaymentProvider
from sandbox.webhooks import RetryPolicy


def create_app(
    *,
    name: str = "payments",
    secret: str,
    webhook_url: str | None = None,
    api_key: str | None = None,
    settings: PaymentSettings | None = None,
    faults: PaymentFaults | None = None,
    retry: RetryPolicy | None = None,
    idempotency_retention_s: float = DEFAULT_RETENTION_S,
) -> web.Application:
    """One payment provider called ``name``: webhooks to ``webhook_url`` signed with ``secret``;
    API calls need ``Bearer <api_key>`` when it is set (the buyer's authenticate step never);
    first answers to Idempotency-Keys are replayed for ``idempotency_retention_s`` seconds."""
    instance = new_instance(
        name=name,
        secret=secret,
        webhook_url=webhook_url,
        api_key=api_key,
        faults=faults or PaymentFaults(),
        retry=retry,
        idempotency_retention_s=idempotency_retention_s,
        public_paths=("/authenticate",),
    )
    app = base_app(instance)
    app[PROVIDER] = PaymentProvider(instance, settings or PaymentSettings())
    app.add_routes(routes.routes)
    return app
