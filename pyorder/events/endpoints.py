"""Merchants' webhook endpoints: registered, listed, read and deleted through the API, held in
memory (rebuilt from the store like the engine) and changed only here, each change staged in
the intake's batch.

The registry also answers, without touching the store, the one question the hot paths ask:
which enabled endpoints subscribe to an event type (``wanting``); an empty answer means an
event of that type is not even staged.
"""

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

from pyorder.auth import Principal, Role
from pyorder.events.model import (
    ALL_TYPES,
    Delivery,
    DeliveryState,
    EventType,
    WebhookEndpoint,
)
from pyorder.events.storage import EVENTS
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import Conflict, InvalidInput, InvalidState, NotFound
from pyorder.storage.base import Store
from pyorder.storage.limits import check_row

MAX_URL_LENGTH = 2048
MAX_EVENT_ID = 2**63 - 1
MAX_ENDPOINTS_PER_MERCHANT = 16
SECRET_PREFIX = "whsec_"


class InvalidUrl(InvalidInput):
    code = "invalid_url"


class UnknownEventType(InvalidInput):
    code = "unknown_event_type"


class TooManyEndpoints(Conflict):
    code = "too_many_endpoints"


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; InvalidUrl otherwise."""
    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidUrl(
            f"the url must be at most {MAX_URL_LENGTH} printable characters without spaces",
            field="url",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise InvalidUrl(f"the url cannot be parsed: {exc}", field="url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUrl("the url must be http:// or https:// with a host", field="url")
    return url


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_event_types(types: list[str] | None) -> tuple[str, ...]:
    """The subscribed types, de-duplicated in order; ``("*",)`` for None or when ``*`` is
    among them. UnknownEventType names the first type that is not an ``EventType``."""
    if types is None:
        return (ALL_TYPES,)
    known = {t.value for t in EventType}
    out: list[str] = []
    for t in types:
        if t != ALL_TYPES and t not in known:
            raise UnknownEventType(
                f"unknown event type {t!r}; known: {', '.join(sorted(known))}, or *",
                field="events",
            )
        if t not in out:
            out.append(t)
    if not out:
        raise UnknownEventType("subscribe to at least one event type (or *)", field="events")
    return (ALL_TYPES,) if ALL_TYPES in out else tuple(out)


class Endpoints:
    """Merchants' webhook endpoints and the resending of their events. ``intake`` stages,
    ``store`` reads what committed."""

    def __init__(self, intake: Intake, store: Store) -> None:
        self._intake = intake
        self._store = store
        self.endpoints: dict[int, WebhookEndpoint] = {}
        """Every endpoint ever registered, deleted ones included (ids are never reused)."""
        self._wanting: dict[str, frozenset[int]] = {}
        self.on_change: list[Callable[[WebhookEndpoint], None]] = []
        """Callbacks given an endpoint just registered, given a new secret or deleted (staged)."""
        self.on_resend: list[Callable[[frozenset[int]], None]] = []
        """Callbacks given the endpoint whose failed event was just staged pending again."""
        self._resending = asyncio.Lock()

    # --- state ---------------------------------------------------------------------------------

    def load(self, endpoints: list[WebhookEndpoint]) -> None:
        """Hold exactly what the store holds (at start, and after a failed commit)."""
        self.endpoints = {e.id: e for e in endpoints}
        self._index()

    def add_unknown(self, endpoints: list[WebhookEndpoint]) -> None:
        """Add the stored endpoints this copy does not hold (a cluster's new leader: those a
        previous leader made), keeping every one it holds."""
        fresh = [e for e in endpoints if e.id not in self.endpoints]
        if fresh:
            self.endpoints.update((e.id, e) for e in fresh)
            self._index()

    def _index(self) -> None:
        live = [e for e in self.endpoints.values() if e.enabled]
        self._wanting = {
            t.value: frozenset(e.id for e in live if e.subscribes(t.value)) for t in EventType
        }

    def _put(self, endpoint: WebhookEndpoint) -> None:
        check_row(endpoint)  # before memory changes: a value no store holds fails this request
        self.endpoints[endpoint.id] = endpoint
        self._intake.batch.part(EVENTS).endpoints[endpoint.id] = endpoint
        self._index()
        for notify in self.on_change:
            notify(endpoint)

    def wanting(self, event_type: str) -> frozenset[int]:
        """Ids of the enabled endpoints subscribed to ``event_type`` (of any merchant)."""
        return self._wanting.get(event_type, frozenset())

    def live(self, endpoint_id: int) -> WebhookEndpoint | None:
        found = self.endpoints.get(endpoint_id)
        return found if found is not None and found.enabled else None

    # --- the API -------------------------------------------------------------------------------

    def create(
        self, who: Principal, url: str, event_types: list[str] | None, description: str
    ) -> WebhookEndpoint:
        """Register an endpoint of the calling merchant (staged). Its secret is generated
        here; the API shows it in this answer only."""
        who.require(Role.MERCHANT)
        url = check_url(url)
        types = check_event_types(event_types)
        mine = [e for e in self.endpoints.values() if e.enabled and e.merchant == who.key]
        if len(mine) >= MAX_ENDPOINTS_PER_MERCHANT:
            raise TooManyEndpoints(
                f"a merchant has at most {MAX_ENDPOINTS_PER_MERCHANT} webhook endpoints",
                limit=MAX_ENDPOINTS_PER_MERCHANT,
            )
        at = now_ms()
        endpoint = WebhookEndpoint(
            id=max(self.endpoints, default=0) + 1,
            merchant=who.key,
            url=url,
            secret=new_secret(),
            event_types=types,
            description=description,
            enabled=True,
            created_ms=at,
            updated_ms=at,
        )
        self._put(endpoint)
        return endpoint

    def visible(self, who: Principal) -> list[WebhookEndpoint]:
        """The caller's endpoints (admins: everyone's), oldest first."""
        who.require(Role.MERCHANT, Role.ADMIN)
        return [
            e
            for _, e in sorted(self.endpoints.items())
            if e.enabled and (who.role is Role.ADMIN or e.merchant == who.key)
        ]

    def get(self, who: Principal, endpoint_id: int) -> WebhookEndpoint:
        """One of the caller's endpoints (admins: anyone's); 404 otherwise, or once deleted."""
        who.require(Role.MERCHANT, Role.ADMIN)
        found = self.live(endpoint_id)
        if found is None or (who.role is not Role.ADMIN and found.merchant != who.key):
            raise NotFound(f"webhook endpoint {endpoint_id} does not exist")
        return found

    def delete(self, who: Principal, endpoint_id: int) -> WebhookEndpoint:
        """Delete (disable) an endpoint (staged): it receives nothing more, and its events not
        delivered yet are cancelled in the same transaction."""
        endpoint = replace(self.get(who, endpoint_id), enabled=False, updated_ms=now_ms())
        self._put(endpoint)
        return endpoint

    def rotate_secret(self, who: Principal, endpoint_id: int) -> WebhookEndpoint:
        """Give an endpoint a new secret (staged), replacing the old one at once: every attempt
        from now on, retries of earlier events included, is signed with it. The API shows it
        in this answer only."""
        endpoint = replace(self.get(who, endpoint_id), secret=new_secret(), updated_ms=now_ms())
        self._put(endpoint)
        return endpoint

    async def resend(self, who: Principal, endpoint_id: int, event_id: int) -> Delivery:
        """Send a ``failed`` event again (staged): ``pending``, due now, with a fresh budget
        of ``max_attempts`` (``attempts`` counts from 0 again; the last status and error stay
        until the next attempt). NotFound for an event not of this endpoint, InvalidState for
        one that is not ``failed``."""
        self.get(who, endpoint_id)
        # One resend at a time, each reading the store once what came before is durable: two
        # of the same event cannot both find it failed (the second would overwrite the outcome
        # of an attempt the first started).
        async with self._resending:
            await self._intake.durable()  # its failure, if just staged, is readable
            before = event_id + 1 if event_id < MAX_EVENT_ID else None
            found = await self._store.deliveries(endpoint_id, before, 1)
            if not found or found[0].id != event_id:
                raise NotFound(f"event evt_{event_id} of endpoint {endpoint_id} does not exist")
            delivery = found[0]
            if delivery.state is not DeliveryState.FAILED:
                raise InvalidState(
                    f"event {delivery.event_id} is {delivery.state.value}; only a failed event"
                    " can be resent",
                    state=delivery.state.value,
                )
            self.get(who, endpoint_id)  # not deleted meanwhile
            at = now_ms()
            delivery = replace(
                delivery,
                state=DeliveryState.PENDING,
                attempts=0,
                next_attempt_ms=at,
                updated_ms=at,
            )
            self._intake.batch.part(EVENTS).deliveries[delivery.id] = delivery
        for notify in self.on_resend:
            notify(frozenset({endpoint_id}))
        return delivery

    async def deliveries(
        self, who: Principal, endpoint_id: int, before_id: int | None, limit: int
    ) -> list[Delivery]:
        """The endpoint's deliveries as committed, newest first (``before_id``: the cursor)."""
        self.get(who, endpoint_id)
        await self._intake.durable()  # the endpoint itself may still be on its way
        return await self._store.deliveries(endpoint_id, before_id, limit)
