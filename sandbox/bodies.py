"""The wire: typed request bodies in (msgspec), JSON out (orjson), errors as JSON.

Every error a sandbox answers is ``{"error": {"code", "message", "details"}}``, as on the main
server, so a client handles both the same way.
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from sandbox.errors import InvalidInput, MalformedBody, SandboxError

log = logging.getLogger(__name__)

T = TypeVar("T")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def decode(body: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON body into ``kind`` (an empty body is ``{}``); 400 if it is not
    JSON, 422 if a field is missing, unknown, or out of range."""
    try:
        body.decode("utf-8")
        return msgspec.json.decode(body or b"{}", type=kind)
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the body is not valid UTF-8: {exc.reason}") from exc
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from exc


async def read(request: web.Request, kind: type[T]) -> T:
    """The request's body decoded into ``kind`` (see ``decode``)."""
    return decode(await request.read(), kind)


def json_response(payload: object, status: int = 200) -> web.Response:
    """``payload`` (dicts, lists, dataclasses, UTC datetimes) as a JSON response."""
    return web.Response(
        status=status,
        body=orjson.dumps(payload, option=orjson.OPT_UTC_Z),
        content_type="application/json",
    )


def iso(at: datetime) -> str:
    """``at`` as ISO 8601 in UTC with a ``Z`` and milliseconds: ``2026-11-11T08:00:00.000Z``."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_response(
    status: int, code: str, message: str, details: Mapping[str, Any] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return json_response(body, status)


def render_error(exc: SandboxError) -> web.Response:
    return error_response(exc.status, exc.code, exc.message, exc.details)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sandbox errors and aiohttp's own HTTP errors as JSON; anything else is a logged 500."""
    try:
        return await handler(request)
    except SandboxError as exc:
        return render_error(exc)
    except ConnectionResetError:
        # The client went away mid-request (gave up waiting): nobody reads this answer.
        return error_response(400, "connection_lost", "the client closed the connection")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(
            exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.text or exc.reason
        )
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; it has been logged")
