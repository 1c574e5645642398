"""One middleware turns every failure into ``{"error": {"code", "message"}}`` with its status."""

import logging
import sqlite3
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from pyorder.errors import DomainError
from pyorder.intake import IntakeUnavailableError
from pyorder.storage.base import StorageError
from server.keys import MAX_BODY_BYTES
from server.schemas import ErrorBody, ErrorOut

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, object] | None = None
) -> web.Response:
    body = msgspec.json.encode(ErrorOut(ErrorBody(code, message, dict(details or {}))))
    return web.Response(status=status, body=body, content_type="application/json")


def domain_error_response(exc: DomainError) -> web.Response:
    return error_response(exc.status, exc.code, exc.message, exc.details)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return domain_error_response(exc)
    except RequestPayloadError as exc:
        return error_response(400, "bad_request", f"the body could not be read: {exc}")
    except IntakeUnavailableError as exc:
        return error_response(503, "unavailable", str(exc))
    except (
        StorageError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        sqlite3.Error,
        OSError,
    ):
        log.exception("storage failed on %s %s", request.method, request.path)
        return error_response(503, "unavailable", "storage is unavailable; retry shortly")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text or exc.reason
        if exc.status == 413:
            message = f"the body is larger than {request.app[MAX_BODY_BYTES]} bytes"
        resp = error_response(exc.status, code, message)
        if exc.status == 405:
            resp.headers["Allow"] = exc.headers.get("Allow", "")
        return resp
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; it has been logged")
