"""Domain errors: each carries a stable code and a message for people, nothing of HTTP.

The errors of every capability's requests, and those of the webhooks providers and carriers
send (``InvalidSignature``, ``InvalidEvent``, ``EventInFlight``: payments, logistics and
returns check them the same way).

The server answers them as ``{"error": {"code": ..., "message": ...}}`` with the status its
table gives the code (``pyorder.server.statuses``).
"""

from typing import Any


class DomainError(Exception):
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(DomainError):
    code = "invalid_input"


class MalformedJson(DomainError):
    """The request body is not JSON (or not UTF-8)."""

    code = "malformed_json"


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class Unauthorized(DomainError):
    code = "unauthorized"


class Conflict(DomainError):
    code = "conflict"


class OutOfStock(Conflict):
    code = "out_of_stock"


class PurchaseLimitExceeded(Conflict):
    code = "purchase_limit_exceeded"


class NotOnSale(Conflict):
    """A SKU of the order has a release time (a flash sale's start) still to come; nothing was
    reserved."""

    code = "not_on_sale"


class RiskBlocked(DomainError):
    """Risk control declined the order (``docs/risk.md``, "At intake"); ``details.decision``
    is the id of its stored decision. Nothing was reserved."""

    code = "risk_blocked"


class InvalidState(Conflict):
    """The order is not in a state that allows the operation (e.g. cancel a paid order)."""

    code = "invalid_state"


class Unavailable(DomainError):
    code = "unavailable"


class InvalidSignature(DomainError):
    """A provider's or carrier's webhook is not signed under its secret (or too long ago)."""

    code = "invalid_signature"


class InvalidEvent(DomainError):
    """A provider's or carrier's webhook body is not an event we can apply."""

    code = "invalid_event"


class EventInFlight(Conflict):
    """The same event is being applied by another delivery: the provider retries later."""

    code = "event_in_flight"
