"""The carrier: creates shipments and returns, bills them by its tariff, and scans each parcel
along its planned journey, publishing every scan as a signed tracking event.

Each parcel's next scan is scheduled only once the previous one happened, so a parcel's events
are published in order (the ``reorder_webhook_rate`` knob aside).
"""

import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import msgspec

from sandbox.carrier.config import CarrierSettings
from sandbox.carrier.model import (
    Kind,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
    Window,
    plan_journey,
)
from sandbox.carrier.schemas import AddressIn, ReturnIn, Scenario, ShipmentIn, WindowIn
from sandbox.carrier.tariff import Quote
from sandbox.errors import InvalidInput, NotFound, UnexpectedState
from sandbox.instance import Instance


class ShipmentStateError(UnexpectedState):
    code = "shipment_unexpected_state"


class Carrier:
    def __init__(self, instance: Instance, settings: CarrierSettings) -> None:
        self.instance = instance
        self.settings = settings
        self.shipments: dict[str, Shipment] = {}
        self.by_tracking_number: dict[str, Shipment] = {}
        self.scans: list[TrackingEvent] = []
        prefix = settings.tracking_prefix or "".join(c for c in instance.name if c.isalpha())[:4]
        self._prefix = (prefix or "SBX").upper()

    def ship(self, body: ShipmentIn, key: str | None) -> Shipment:
        """A parcel to the buyer; its first scan comes one interval later."""
        return self._create(
            "outbound",
            sender=body.from_,
            recipient=body.to,
            weight_g=body.weight_g,
            window=_window(body.delivery_window),
            reference=body.reference,
            original=None,
            metadata=body.metadata,
            scenario=body.scenario,
            key=key,
        )

    def ship_return(self, body: ReturnIn, key: str | None) -> Shipment:
        """A parcel picked up from the buyer back to a warehouse."""
        return self._create(
            "return",
            sender=body.from_,
            recipient=body.to,
            weight_g=body.weight_g,
            window=None,
            reference=body.reference,
            original=body.original_tracking_number,
            metadata=body.metadata,
            scenario=body.scenario,
            key=key,
        )

    def quote(self, weight_g: int) -> Quote:
        return self.settings.tariff.quote(weight_g)

    def get(self, shipment_id: str) -> Shipment:
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            raise NotFound(f"no such shipment: {shipment_id}", id=shipment_id)
        return shipment

    def track(self, tracking_number: str) -> Shipment:
        shipment = self.by_tracking_number.get(tracking_number)
        if shipment is None:
            raise NotFound(f"no such tracking number: {tracking_number}")
        return shipment

    def cancel(self, shipment_id: str) -> Shipment:
        """Cancel before pickup; nothing is billed then."""
        shipment = self.get(shipment_id)
        if shipment.status is not ShipmentStatus.CREATED:
            raise ShipmentStateError(
                f"cannot cancel a shipment in status {shipment.status}", status=str(shipment.status)
            )
        shipment.status = ShipmentStatus.CANCELED
        shipment.canceled_at = datetime.now(UTC)
        shipment.cost = 0
        shipment.first_weight_cost = 0
        return shipment

    def ledger(self) -> dict[str, object]:
        totals: defaultdict[str, dict[str, int]] = defaultdict(lambda: {"cost": 0, "shipments": 0})
        for shipment in self.shipments.values():
            if shipment.status is not ShipmentStatus.CANCELED:
                totals[shipment.currency]["cost"] += shipment.cost
                totals[shipment.currency]["shipments"] += 1
        return {
            "provider": self.instance.name,
            "shipments": [s.ledger() for s in self.shipments.values()],
            "events": [e.public() for e in self.scans],
            "totals": dict(totals),
            "webhooks": [d.public() for d in self.instance.sender.deliveries],
        }

    # --- steps -----------------------------------------------------------------------------

    def _create(
        self,
        kind: Kind,
        *,
        sender: AddressIn | None,
        recipient: AddressIn,
        weight_g: int,
        window: Window | None,
        reference: str | None,
        original: str | None,
        metadata: dict[str, str],
        scenario: Scenario | None,
        key: str | None,
    ) -> Shipment:
        fails = scenario == "exception" or (
            scenario is None and self.instance.faults.chance("exception_rate")
        )
        created_at = datetime.now(UTC)
        quote = self.quote(weight_g)
        shipment = Shipment(
            id=f"shp_{secrets.token_hex(12)}",
            kind=kind,
            tracking_number=self._tracking_number(),
            sender=None if sender is None else msgspec.to_builtins(sender),
            recipient=msgspec.to_builtins(recipient),
            weight_g=weight_g,
            window=window,
            reference=reference,
            original_tracking_number=original,
            metadata=dict(metadata),
            currency=quote.currency,
            cost=quote.total_cost,
            first_weight_cost=quote.first_weight_cost,
            idempotency_key=key,
            created_at=created_at,
            journey=plan_journey(
                kind,
                created_at=created_at,
                interval_s=self.settings.event_interval_s,
                window=window,
                origin=sender.city if sender is not None else "origin warehouse",
                destination=recipient.city,
                fails=fails,
            ),
        )
        self.shipments[shipment.id] = shipment
        self.by_tracking_number[shipment.tracking_number] = shipment
        self._schedule_next(shipment)
        return shipment

    def _tracking_number(self) -> str:
        while True:
            number = f"{self._prefix}{secrets.randbelow(10**12):012d}"
            if number not in self.by_tracking_number:
                return number

    def _schedule_next(self, shipment: Shipment) -> None:
        scan = shipment.next_scan
        if scan is None:
            return
        done_s = shipment.journey[len(shipment.events) - 1].after_s if shipment.events else 0.0
        real_s = (scan.after_s - done_s) / self.settings.time_scale
        shipment_id = shipment.id
        self.instance.timers.after(real_s, lambda: self._scan(shipment_id))

    def _scan(self, shipment_id: str) -> None:
        shipment = self.shipments[shipment_id]
        scan = shipment.next_scan
        if scan is None:
            return
        event = TrackingEvent(
            id=f"te_{secrets.token_hex(12)}",
            shipment=shipment.id,
            tracking_number=shipment.tracking_number,
            kind=shipment.kind,
            reference=shipment.reference,
            sequence=len(shipment.events) + 1,
            status=scan.status,
            occurred_at=shipment.created_at + timedelta(seconds=scan.after_s),
            location=scan.location,
            details=dict(scan.details),
        )
        shipment.events.append(event)
        shipment.status = scan.status
        self.scans.append(event)
        self.instance.publish(f"tracking.{scan.status}", event.public())
        self._schedule_next(shipment)


def _window(window: WindowIn | None) -> Window | None:
    if window is None:
        return None
    if window.end <= window.start:
        raise InvalidInput("delivery_window.end must be after its start")
    return Window(window.start.astimezone(UTC), window.end.astimezone(UTC))
