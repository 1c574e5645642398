"""Domain errors: each carries a stable code, a message for people, and an HTTP status.

The errors of every capability's requests, and those of the webhooks providers and carriers
send (``InvalidSignature``, ``InvalidEvent``, ``EventInFlight``: payments, logistics and
returns check them the same way).

The server (``server.handling``) turns them into ``{"error": {"code": ..., "message": ...}}``.
"""

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(DomainError):
    status = 422
    code = "invalid_input"


class MalformedJson(DomainError):
    """The request body is not JSON (or not UTF-8)."""

    status = 400
    code = "malformed_json"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class OutOfStock(Conflict):
    code = "out_of_stock"


class PurchaseLimitExceeded(Conflict):
    code = "purchase_limit_exceeded"


class InvalidState(Conflict):
    """The order is not in a state that allows the operation (e.g. cancel a paid order)."""

    code = "invalid_state"


class Unavailable(DomainError):
    status = 503
    code = "unavailable"


class InvalidSignature(DomainError):
    """A provider's or carrier's webhook is not signed under its secret (or too long ago)."""

    status = 400
    code = "invalid_signature"


class InvalidEvent(DomainError):
    """A provider's or carrier's webhook body is not an event we can apply."""

    status = 400
    code = "invalid_event"


class EventInFlight(Conflict):
    """The same event is being applied by another delivery: the provider retries later."""

    code = "event_in_flight"
