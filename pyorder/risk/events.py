"""What the risk signals are computed from: the events of one shopper's order attempt and its
payment attempts, as the server sees them (``docs/risk.md``, "Signals").

These are the one schema shared by the three users of risk signals: the server (each order's
optional client context and the payment provider's answer), the synthetic data generator
(``pyorder.risk.sim``) and the velocity features of the Rust core (``pyorder.risk.features``).
Every field but the time, the buyer and the amounts is optional: a body without a client
context still works, and a feature of a missing field is missing (NaN), not zero.

Times are UTC milliseconds since the epoch; money is integer minor units.
"""

from dataclasses import dataclass
from enum import IntEnum


class AgentClass(IntEnum):
    """The user agent's class, as the server derives it from the ``User-Agent`` header (or the
    client context says): the raw string is not a feature."""

    UNKNOWN = 0
    BROWSER = 1
    APP = 2
    HEADLESS = 3
    """A headless browser or an HTTP library (curl, python-requests, Go-http-client ...)."""


@dataclass(frozen=True, slots=True)
class OrderAttempt:
    """One order placed (scored before it reserves anything)."""

    at_ms: int
    buyer: int
    account_created_ms: int
    """When the buyer's account was made (the account age is a feature)."""
    amount: int
    """The order's total, in minor units."""
    sku: int
    """The order's first (or only) SKU: flash-sale signals are per SKU."""
    quantity: int
    sku_release_ms: int | None = None
    """When the SKU went on sale, for a flash sale (seconds from release to order)."""
    device: str | None = None
    """The client's device id (an app's install id, a browser's cookie id)."""
    ip: str | None = None
    """The client's IP: the connection's peer, or ``X-Forwarded-For`` behind a trusted proxy."""
    ip_region: str | None = None
    """The region the IP maps to (the server's configured prefix table); None when unknown."""
    email_hash: str | None = None
    phone_hash: str | None = None
    agent: AgentClass = AgentClass.UNKNOWN
    address: str | None = None
    """The shipping address, normalised (case, spaces) into one key."""
    ship_region: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentAttempt:
    """One authorisation of an order's payment, with the provider's answer."""

    at_ms: int
    buyer: int
    amount: int
    instrument: str
    """The payment instrument's fingerprint, from the provider's answer (the same card or
    account gives the same fingerprint, whoever uses it)."""
    authorised: bool
    """Whether the provider authorised it (a decline counts towards card-testing signals)."""
    device: str | None = None
    ip: str | None = None
