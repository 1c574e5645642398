"""What every sandbox instance has, and the application skeleton around it.

An ``Instance`` is one provider as the platform sees it: a name, the webhook secret it shares
with the platform, an optional API key, its fault knobs, its Idempotency-Key store, its
webhook sender and its timers. ``base_app`` builds the aiohttp application with the middleware
stack (outages and lost answers outermost, then JSON errors, API key, idempotency, and latency
innermost) and the admin endpoints every sandbox has; each sandbox adds its own API routes and
its ledger.

Admin endpoints (never faulted, never need the API key):

- ``GET /healthz``
- ``GET /_sandbox/faults``, ``POST /_sandbox/faults`` (a partial update; answers the knobs now)
- ``GET /_sandbox/webhook``, ``POST /_sandbox/webhook`` ``{"url": "http://..." | null}``
"""

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.bodies import error_middleware, json_response, read
from sandbox.errors import InvalidInput, Unauthorized
from sandbox.faults import Faults, FaultState, fault_middleware, latency_middleware
from sandbox.idempotency import IdempotencyStore
from sandbox.timers import Timers
from sandbox.webhooks import Event, RetryPolicy, WebhookSender

Url = Annotated[str, msgspec.Meta(pattern="^https?://", max_length=2000)]


@dataclass
class Instance:
    name: str
    faults: FaultState
    sender: WebhookSender
    api_key: str | None = None
    """When set, API calls need ``Authorization: Bearer <api_key>``."""
    public_paths: tuple[str, ...] = ()
    """API path suffixes open without the key (the buyer's own steps, like authenticating)."""
    idempotency: IdempotencyStore = field(default_factory=IdempotencyStore)
    timers: Timers = field(default_factory=Timers)

    def publish(self, type: str, obj: object) -> Event:
        """Record an event about ``obj`` (its JSON form now) and queue it for the webhook."""
        event = Event.new(self.name, type, obj)
        self.sender.publish(event)
        return event


INSTANCE = web.AppKey("instance", Instance)


def new_instance(
    *,
    name: str,
    secret: str,
    webhook_url: str | None,
    api_key: str | None,
    faults: Faults,
    retry: RetryPolicy | None,
    idempotency_retention_s: float,
    public_paths: tuple[str, ...] = (),
) -> Instance:
    """An instance whose webhooks go to ``webhook_url`` signed with ``secret``."""
    state = FaultState(faults)
    return Instance(
        name=name,
        faults=state,
        sender=WebhookSender(name, secret, webhook_url, state, retry),
        api_key=api_key,
        public_paths=public_paths,
        idempotency=IdempotencyStore(idempotency_retention_s),
    )


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    url: Url | None


def base_app(instance: Instance) -> web.Application:
    """An application with ``instance``'s middleware, admin endpoints and lifecycle."""
    app = web.Application(
        middlewares=[
            fault_middleware(instance.faults),
            error_middleware,
            _api_key_middleware(instance),
            instance.idempotency.middleware(),
            latency_middleware(instance.faults),
        ]
    )
    app[INSTANCE] = instance
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/_sandbox/faults", get_faults)
    app.router.add_post("/_sandbox/faults", set_faults)
    app.router.add_get("/_sandbox/webhook", get_webhook)
    app.router.add_post("/_sandbox/webhook", set_webhook)
    app.cleanup_ctx.append(_run_instance)
    app.on_shutdown.append(_release_hung_requests)
    return app


async def _run_instance(app: web.Application) -> AsyncIterator[None]:
    instance = app[INSTANCE]
    await instance.sender.start()
    yield
    instance.timers.cancel_all()
    await instance.sender.stop()


async def _release_hung_requests(app: web.Application) -> None:
    app[INSTANCE].faults.stopping = True


def _api_key_middleware(instance: Instance) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = instance.api_key
        if (
            key is not None
            and request.path.startswith("/v1/")
            and not any(request.path.endswith(p) for p in instance.public_paths)
        ):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            given = token.strip().encode("utf-8", "replace")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, key.encode()):
                raise Unauthorized("send 'Authorization: Bearer <the provider's API key>'")
        return await handler(request)

    return middleware


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "provider": request.app[INSTANCE].name})


async def get_faults(request: web.Request) -> web.Response:
    return json_response(msgspec.to_builtins(request.app[INSTANCE].faults.settings))


async def set_faults(request: web.Request) -> web.Response:
    patch = await read(request, dict[str, object])
    try:
        settings = request.app[INSTANCE].faults.update(patch)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from exc
    return json_response(msgspec.to_builtins(settings))


async def get_webhook(request: web.Request) -> web.Response:
    return json_response({"url": request.app[INSTANCE].sender.url})


async def set_webhook(request: web.Request) -> web.Response:
    body = await read(request, WebhookIn)
    request.app[INSTANCE].sender.url = body.url
    return json_response({"url": body.url})
