"""The simulated world's things: devices, networks, places, households, offices, shoppers
and the catalogue. Some carry latent facts (a device being a phone, an office's procurement
script); those steer behaviour and never reach an event."""

import random
from dataclasses import dataclass, field
from typing import NamedTuple

from pyorder.risk.events import AgentClass
from pyorder.risk.sim.ids import Ids


class Device(NamedTuple):
    """A client: its id as the server sees it (None: the client sends none) and its agent."""

    id: str | None
    agent: AgentClass
    mobile: bool = False
    """Latent: a phone, which also reaches the shop over its carrier's shared IPs."""


class Net(NamedTuple):
    """An IP and the region the server's prefix table maps it to (None: not in the table)."""

    ip: str
    region: str | None


class Place(NamedTuple):
    """A shipping address (its normalised key) and its region."""

    address: str
    region: str


@dataclass(slots=True)
class Household:
    """People at one address behind one home IP, maybe sharing a laptop and a card."""

    place: Place
    net: Net
    shared_device: Device | None
    size: int
    members: list["Shopper"] = field(default_factory=list)


@dataclass(slots=True)
class Office:
    """Colleagues behind the office's IPs, some desks shared, deliveries to the office."""

    place: Place
    nets: list[Net]
    shared_devices: list[Device]
    size: int = 0


@dataclass(slots=True)
class Trip:
    """A shopper away from home: online through hotel networks of another region."""

    start_ms: int
    end_ms: int
    region: str


@dataclass(slots=True)
class Shopper:
    """An honest account and the person behind it."""

    buyer: int
    created_ms: int
    region: str
    email_hash: str
    phone_hash: str | None
    household: Household
    devices: list[Device]
    instruments: list[str]
    rate_per_day: float
    office: Office | None = None
    trip: Trip | None = None
    vpn: Net | None = None
    """Latent: the VPN exit (in another region) the shopper's traffic mostly leaves through."""
    new_phone: tuple[int, Device] | None = None
    """Latent: from this instant on, the shopper's phone is a new device."""
    procurement: bool = False
    """Latent: the account is an office's purchasing script (an HTTP library, not a browser)."""

    def devices_at(self, at_ms: int) -> list[Device]:
        """The shopper's own devices at an instant (the old phone is gone after a change)."""
        if self.new_phone is None or at_ms < self.new_phone[0]:
            return self.devices
        return [self.new_phone[1] if d.mobile else d for d in self.devices]


class FlashSale(NamedTuple):
    """A limited SKU released at an instant; ``limit`` units at most per order."""

    sku: int
    release_ms: int
    price: int
    limit: int


@dataclass(slots=True)
class Catalogue:
    """SKUs by id with their prices (minor units) and popularity; the flash sales."""

    prices: dict[int, int]
    skus: list[int]
    cum_weights: list[float]
    premium: list[int]
    """SKUs in the top decile of price (gifts, takeovers, resale)."""
    cheap: list[int]
    """SKUs in the bottom decile of price (card testers try cards on these)."""
    flash_sales: list[FlashSale]

    def popular(self, rng: random.Random) -> int:
        """A SKU drawn by popularity."""
        return rng.choices(self.skus, cum_weights=self.cum_weights)[0]


@dataclass(slots=True)
class World:
    """Everything the behaviours draw from."""

    ids: Ids
    shoppers: list[Shopper]
    catalogue: Catalogue
    mobile_nets: dict[str, list[Net]]
    """Carrier-grade NAT addresses per region: many phones share each."""
    hotel_nets: dict[str, list[Net]]
    vpn_nets: dict[str, list[Net]]
    """A VPN provider's exits per region: many users, few addresses."""
