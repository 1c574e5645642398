"""Signed events received from providers and carriers: the record that one was applied.

Payments (provider events) and logistics (carrier tracking events) both de-duplicate their
webhooks by the sender's event id: the record of an applied event is staged in the same batch
as the event's effects, so a redelivered event is recognised after a restart too.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """An event already applied, keyed by ``(provider, event_id)``; a carrier's events use
    ``carrier:<name>`` as the provider. ``received_ms``: ms since the Unix epoch (UTC)."""

    provider: str
    event_id: str
    type: str
    received_ms: int
