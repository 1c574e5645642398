"""Every failure as ``{"error": {"code", "message"}}`` with its status (see ``response_for``)."""

import logging
import sqlite3

import asyncpg
import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from pyorder.intake import IntakeUnavailableError
from pyorder.kernel.errors import DomainError
from pyorder.server.bodies import ErrorBody, ErrorOut
from pyorder.server.keys import MAX_BODY_BYTES, METRICS
from pyorder.server.statuses import status_of
from pyorder.storage.base import StorageError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}


class BodyTimeoutError(TimeoutError):
    """A request's body did not arrive in time (``pyorder.server.connections``): set on the body
    stream, raised to whoever reads it. A ``TimeoutError``, so that aiohttp, draining an
    unread body after the answer, stops and closes the connection quietly."""


def error_response(
    status: int, code: str, message: str, details: dict[str, object] | None = None
) -> web.Response:
    body = msgspec.json.encode(ErrorOut(ErrorBody(code, message, dict(details or {}))))
    return web.Response(status=status, body=body, content_type="application/json")


def domain_error_response(exc: DomainError) -> web.Response:
    return error_response(status_of(exc), exc.code, exc.message, exc.details)


def response_for(request: web.Request, exc: Exception) -> web.Response:
    """The JSON error response for ``exc`` raised while handling ``request``; re-raises what
    is not an error (an ``HTTPException`` below 400, such as a redirect)."""
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    if isinstance(exc, (RequestPayloadError, BodyTimeoutError)):
        # The body's framing is lost (a broken chunk, a body cut short): answer, then close.
        if isinstance(exc, BodyTimeoutError):
            resp = error_response(408, "request_timeout", str(exc))
        else:
            resp = error_response(400, "bad_framing", f"the body could not be read: {exc}")
        resp.force_close()
        return resp
    if isinstance(exc, ConnectionError) and request.transport is None:
        # The client went away (mid-body, say): nothing failed here, and no one to answer.
        request.app[METRICS].connections.disconnects += 1
        log.debug("client disconnected on %s %s: %r", request.method, request.path, exc)
        return error_response(499, "client_closed_request", "the client disconnected")
    if isinstance(exc, IntakeUnavailableError):
        return error_response(503, "unavailable", str(exc))
    if isinstance(exc, _STORAGE_ERRORS):
        log.error("storage failed on %s %s", request.method, request.path, exc_info=exc)
        return error_response(503, "unavailable", "storage is unavailable; retry shortly")
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text or exc.reason
        if exc.status == 413:
            message = f"the body is larger than {request.app[MAX_BODY_BYTES]} bytes"
        resp = error_response(exc.status, code, message)
        if exc.status == 405:
            resp.headers["Allow"] = exc.headers.get("Allow", "")
        return resp
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal", "internal error; it has been logged")


_STORAGE_ERRORS = (
    StorageError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    sqlite3.Error,
    OSError,
)
