"""Signed webhooks from providers and carriers, each applied once: verify the signature,
decode the body in full, refuse a second delivery of an event still being applied, skip one
already applied, and stage the event's record in the same batch as its effects.

Payments (provider events) and logistics (carrier tracking events) share this; what differs
(the secret, how a body decodes, what an event changes) is passed in. An event's record
(``pyorder.kernel.inbox.WebhookEvent``) and its effects are staged with no await in between,
so one batch holds both: after a crash either both are stored or neither, and a redelivered
event is recognised as a duplicate once its batch committed.
"""

from collections.abc import Callable, Mapping
from typing import TypeVar

from pyorder.documents import Event
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import EventInFlight, InvalidSignature
from pyorder.kernel.inbox import WebhookEvent
from pyorder.kernel.signing import SIGNATURE_HEADER, SignatureError, verify
from pyorder.storage.base import Store
from pyorder.storage.limits import check_row
from pyorder.storage.outbox import OUTBOX

T = TypeVar("T")

After = Callable[[], None]
"""What to do once the event's batch is durable (e.g. count a delivery)."""


class Inbox:
    """Applies signed events once; one per receiving service."""

    def __init__(self, intake: Intake, store: Store) -> None:
        self._intake = intake
        self._store = store
        self._in_flight: set[tuple[str, str]] = set()

    async def receive(
        self,
        source: str,
        secret: str,
        body: bytes,
        headers: Mapping[str, str],
        decode: Callable[[bytes], tuple[Event, T]],
        apply: Callable[[Event, T], After | None],
    ) -> tuple[bool, str]:
        """Verify ``body`` under ``secret``, decode it and apply it with ``apply`` unless the
        event ``(source, id)`` was applied before; returns (duplicate?, event id) once its
        effects are durable. A bad signature is ``InvalidSignature`` and a bad body the
        decoder's error, both before anything changes; a delivery racing another of the same
        event is ``EventInFlight`` (the sender retries)."""
        try:
            verify(body, headers.get(SIGNATURE_HEADER), secret)
        except SignatureError as exc:
            raise InvalidSignature(str(exc)) from exc
        event, obj = decode(body)  # in full, before anything is applied or staged
        scope = (source, event.id)
        if scope in self._in_flight:
            raise EventInFlight(f"event {event.id} is being applied")
        self._in_flight.add(scope)
        try:
            if await self._store.webhook_event_seen(*scope):
                return True, event.id
            # Apply and stage with no await in between: one batch holds the event and its effects.
            seen = WebhookEvent(source, event.id, event.type, now_ms())
            check_row(seen)
            after = apply(event, obj)
            self._intake.batch.part(OUTBOX).webhook_events.append(seen)
            await self._intake.durable()
            if after is not None:
                after()
            return False, event.id
        finally:
            self._in_flight.discard(scope)
