"""Errors a sandbox answers with: each has an HTTP status, a stable code and a message.

They render as ``{"error": {"code", "message", "details"}}`` (``sandbox.bodies``). ``replayable``
says whether the Idempotency-Key layer stores the answer: as at Stripe, a request refused before
it ran (unreadable or invalid parameters) stores nothing, while one that ran and failed (a
declined card, a state that does not allow the action) replays its failure.
"""

from typing import Any


class SandboxError(Exception):
    status = 400
    code = "bad_request"
    replayable = True

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class MalformedBody(SandboxError):
    """The body is not JSON (or not UTF-8)."""

    status = 400
    code = "malformed_json"
    replayable = False


class InvalidInput(SandboxError):
    """The body is JSON but its fields are missing, unknown, or out of range."""

    status = 422
    code = "invalid_input"
    replayable = False


class Unauthorized(SandboxError):
    status = 401
    code = "unauthorized"
    replayable = False


class NotFound(SandboxError):
    status = 404
    code = "resource_missing"


class UnexpectedState(SandboxError):
    """The object's state does not allow this action (confirming a canceled payment...)."""

    status = 409
    code = "unexpected_state"


class Unavailable(SandboxError):
    status = 503
    code = "unavailable"
    replayable = False
