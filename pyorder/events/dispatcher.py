"""Delivers the order events to the merchants' endpoints, signed, in order, with retries.

One task per enabled endpoint with something to send. It reads the endpoint's pending events
from the store (``Store.pending_deliveries``: committed ones only, by event id) a page at a
time and sends them one after another: an event is retried until it is delivered or has
failed every attempt before the next one goes, so an endpoint sees its events in the order
they happened. Each attempt is a ``POST`` of the event's JSON (the same bytes every time)
with a timeout, signed afresh: ``Pyorder-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"t.body">`` under the endpoint's secret (``pyorder.kernel.signing``'s scheme, Stripe's). A 2xx
answer delivers it; anything else (another status, no answer in time, a refused connection)
is a failed attempt, retried after ``WebhooksConfig.delay_ms`` (exponential, capped), until
``max_attempts``: then it is ``failed`` (until its merchant resends it: ``Endpoints.resend``
stages it ``pending`` again and wakes its endpoint's task here).

Each outcome is staged in the intake's batch (attempts, next attempt, last status), so the
schedule survives a restart: the store is the queue, and on start (or after a rebuild) every
endpoint's pending events are read again. An event sent whose outcome was not durable yet
when the process died is sent again: delivery is at least once, and receivers de-duplicate by
the event id (``evt_<n>``, also in the ``Pyorder-Event-Id`` header).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

import aiohttp

from pyorder.events import payloads
from pyorder.events.endpoints import Endpoints
from pyorder.events.model import Delivery, DeliveryState, WebhookEndpoint, WebhooksConfig
from pyorder.events.publisher import Events
from pyorder.events.storage import EVENTS
from pyorder.intake import Intake, IntakeUnavailableError
from pyorder.kernel.clock import now_ms
from pyorder.kernel.signing import sign
from pyorder.marketplace import Views
from pyorder.orders.model import Order
from pyorder.storage.base import StorageError, Store

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Pyorder-Signature"
EVENT_ID_HEADER = "Pyorder-Event-Id"
EVENT_TYPE_HEADER = "Pyorder-Event-Type"
USER_AGENT = "pyorder-webhooks/1"
MAX_ANSWER_BYTES = 64 * 1024
"""What is read of an endpoint's answer (its body is ignored)."""
_RETRY_S = (0.05, 5.0)
"""First and longest wait after the store or the intake failed the task."""


class EventDispatcher:
    """Sends the events of ``endpoints`` (woken by ``events`` as they are staged) under
    ``config``, each cut to what its merchant may see (``views``); ``intake`` stages the
    outcomes, ``store`` holds what is pending."""

    def __init__(
        self,
        endpoints: Endpoints,
        events: Events,
        config: WebhooksConfig,
        views: Views,
        intake: Intake,
        store: Store,
        *,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.endpoints = endpoints
        self._active = active
        """Whether this node sends (the cluster's leader only, ``NodeClaim.leader``): the
        deliveries are read from the store, shared by every node."""
        self.config = config
        self._views = views
        self._intake = intake
        self._store = store
        self._session: aiohttp.ClientSession | None = None
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._wakes: dict[int, asyncio.Event] = {}
        self._stopping = False
        self._on_attempt: list[Callable[[str], None]] = []
        events.on_staged.append(self.wake)
        endpoints.on_change.append(self._changed)
        endpoints.on_resend.append(self.wake)

    def subscribe_attempts(self, notify: Callable[[str], None]) -> None:
        """Call ``notify`` with the outcome of each attempt, once staged: ``delivered``,
        ``retried`` (failed, due again) or ``failed`` (its last attempt failed)."""
        self._on_attempt.append(notify)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_ms / 1000)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self.resume()

    def resume(self) -> None:
        """Send what the store holds pending, for every enabled endpoint (after a start or a
        rebuild)."""
        self.wake(frozenset(e.id for e in self.endpoints.endpoints.values() if e.enabled))

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self, endpoint_ids: frozenset[int]) -> None:
        """The endpoints may have new events once what is staged commits."""
        if not self._active():
            return
        for eid in endpoint_ids:
            self._wakes.setdefault(eid, asyncio.Event()).set()
            running = self._workers.get(eid)
            if running is not None and not running.done():
                continue
            if not self._stopping and self._session is not None:
                task = asyncio.create_task(self._run(eid), name=f"pyorder-webhooks-{eid}")
                self._workers[eid] = task
                task.add_done_callback(self._forget)

    def _forget(self, task: "asyncio.Task[None]") -> None:
        for eid, t in list(self._workers.items()):
            if t is task:
                del self._workers[eid]

    def _changed(self, endpoint: WebhookEndpoint) -> None:
        if endpoint.enabled:
            self.wake(frozenset({endpoint.id}))
            return
        # Deleted: stop at once (what it had pending is cancelled in the same batch).
        task = self._workers.pop(endpoint.id, None)
        if task is not None:
            task.cancel()

    # --- one endpoint --------------------------------------------------------------------------

    async def _run(self, endpoint_id: int) -> None:
        wake = self._wakes[endpoint_id]
        backoff = _RETRY_S[0]
        while True:
            wake.clear()
            try:
                await self._intake.durable()  # what woke us is committed, hence readable
                if self.endpoints.live(endpoint_id) is None or not self._active():
                    return
                page = await self._store.pending_deliveries(endpoint_id, self.config.page)
                # The orders the bodies are cut from (and order.created rendered), in one read.
                wanted = list(dict.fromkeys(d.order_id for d in page))
                orders = await self._store.get_orders(wanted) if wanted else {}
                for delivery in page:
                    await self._deliver(delivery, orders.get(delivery.order_id))
                await self._intake.durable()  # their outcomes, before the next read
                backoff = _RETRY_S[0]
            except (IntakeUnavailableError, StorageError) as exc:
                log.info("webhook endpoint %d: %s; again in %.2f s", endpoint_id, exc, backoff)
            except Exception:
                log.exception("webhook endpoint %d failed; again in %.2f s", endpoint_id, backoff)
            else:
                if len(page) < self.config.page:
                    await wake.wait()  # caught up: until new events are staged
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _RETRY_S[1])

    async def _deliver(self, delivery: Delivery, order: Order | None = None) -> None:
        """Send one event until it is delivered or failed (or its endpoint is deleted, which
        cancels this task). ``order``: the event's order, if already read."""
        body: bytes | None = None
        while delivery.state is DeliveryState.PENDING:
            endpoint = self.endpoints.live(delivery.endpoint_id)
            if endpoint is None:
                return
            wait_ms = delivery.next_attempt_ms - now_ms()
            if wait_ms > 0:
                await asyncio.sleep(wait_ms / 1000)
                continue
            if body is None:
                body = await self._body(delivery, order)
                if body is None:
                    self._skip(delivery)
                    return
            status, error = await self._post(endpoint, delivery, body)
            delivery = self._record(delivery, status, error)

    async def _body(self, delivery: Delivery, order: Order | None) -> bytes | None:
        """The envelope of the event as its endpoint's merchant is sent it (its part of the
        order: ``payloads.for_merchant``); None when nothing of it is the merchant's."""
        if order is None:
            order = await self._store.get_order(delivery.order_id)
        if order is None:
            raise StorageError(f"order {delivery.order_id} of event {delivery.id} is gone")
        data = payloads.for_merchant(
            self._views, delivery.merchant, delivery.type, delivery.payload, order
        )
        return None if data is None else payloads.envelope(delivery, data)

    def _skip(self, delivery: Delivery) -> None:
        """Stage an event that is none of its merchant's business as cancelled, unsent."""
        at = now_ms()
        skipped = replace(
            delivery,
            state=DeliveryState.CANCELLED,
            last_error="not about the merchant's lines: not sent",
            updated_ms=at,
        )
        self._intake.batch.part(EVENTS).deliveries[skipped.id] = skipped

    async def _post(
        self, endpoint: WebhookEndpoint, delivery: Delivery, body: bytes
    ) -> tuple[int, str]:
        """(HTTP status, error) of one attempt; status 0 when there was no answer."""
        assert self._session is not None, "start() the dispatcher first"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(body, endpoint.secret),
            EVENT_ID_HEADER: delivery.event_id,
            EVENT_TYPE_HEADER: delivery.type,
        }
        try:
            async with self._session.post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.content.read(MAX_ANSWER_BYTES)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # The text may quote the merchant's bytes: keep it storable (no U+0000, UTF-8).
            text = f"{type(exc).__name__}: {exc}"[:500].replace("\x00", "\ufffd")
            return 0, text.encode("utf-8", "replace").decode("utf-8")
        return status, "" if 200 <= status < 300 else f"HTTP {status}"

    def _record(self, d: Delivery, status: int, error: str) -> Delivery:
        """Stage the outcome of an attempt; returns the delivery as it now is."""
        at, attempts = now_ms(), d.attempts + 1
        if 200 <= status < 300:
            d = replace(d, state=DeliveryState.DELIVERED, delivered_ms=at, last_error="")
            outcome = "delivered"
        elif attempts >= self.config.max_attempts:
            d = replace(d, state=DeliveryState.FAILED, last_error=error)
            outcome = "failed"
            log.warning(
                "webhook %s (%s) to endpoint %d failed %d times; giving up: %s",
                d.event_id,
                d.type,
                d.endpoint_id,
                attempts,
                error,
            )
        else:
            d = replace(d, next_attempt_ms=at + self.config.delay_ms(attempts), last_error=error)
            outcome = "retried"
        d = replace(d, attempts=attempts, last_status=status, updated_ms=at)
        self._intake.batch.part(EVENTS).deliveries[d.id] = d
        for notify in self._on_attempt:
            notify(outcome)
        return d
