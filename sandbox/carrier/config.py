"""How a carrier instance is set up: its clock, its tariff, and its extra knob."""

from dataclasses import dataclass, field

from sandbox.carrier.tariff import Tariff
from sandbox.faults import Faults, Rate


class CarrierFaults(Faults, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The common knobs, and the carrier's own."""

    exception_rate: Rate = 0.0
    """A new shipment (without a ``scenario``) ends in ``exception`` instead of delivery."""


@dataclass(frozen=True)
class CarrierSettings:
    event_interval_s: float = 4 * 3600.0
    """Carrier time between two scans of a parcel (seconds), before ``time_scale``."""
    time_scale: float = 1.0
    """Carrier seconds per real second: 3600 makes an hour of the parcel's journey pass in one
    second. Tracking events carry carrier time (``occurred_at``); deliveries happen in real
    time, scaled."""
    tariff: Tariff = field(default_factory=Tariff)
    tracking_prefix: str | None = None
    """Tracking numbers start with this (default: the carrier's name, up to 4 letters)."""
