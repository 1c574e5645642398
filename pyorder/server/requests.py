"""Reading requests: the caller's principal, typed bodies, query parameters."""

from typing import TypeVar

import msgspec
from aiohttp import web

from pyorder.auth import Principal
from pyorder.kernel.errors import InvalidInput, MalformedJson
from pyorder.server.keys import ISSUER

T = TypeVar("T")


def principal(request: web.Request) -> Principal:
    """The verified caller; 401 without a valid bearer token."""
    return request.app[ISSUER].bearer(request.headers.get("Authorization", ""))


def decode(body: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON body into ``kind``; 400 if not JSON, 422 if invalid."""
    try:
        body.decode("utf-8")  # msgspec lets invalid UTF-8 through inside strings
    except UnicodeDecodeError as exc:
        raise MalformedJson(
            f"the body is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from exc
    try:
        value = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc), path=error_path(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise MalformedJson(f"the body is not valid JSON: {exc}") from exc
    except RecursionError:  # msgspec recurses into nested arrays and objects
        raise MalformedJson("the body is nested too deep") from None
    if b"\\u0000" in body and _has_nul(msgspec.json.decode(body)):
        # Text columns (PostgreSQL's above all) cannot hold U+0000.
        raise InvalidInput("strings must not contain the character U+0000", path="$")
    return value


def error_path(message: str) -> str:
    """The path a msgspec validation message names (`` - at `$.lines[0].sku` `` at its end),
    ``$`` (the body) when it names none, as msgspec leaves the path out at the top."""
    head, sep, tail = message.rpartition(" - at `")
    if sep and head and tail.endswith("`"):
        return tail[:-1]
    return "$"


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def int_param(
    request: web.Request, name: str, *, lo: int, hi: int, default: int | None = None
) -> int:
    """A non-negative integer from the path or the query string; 422 if absent or out of range."""
    raw = request.match_info.get(name) or request.query.get(name)
    if raw is None:
        if default is None:
            raise InvalidInput(f"{name} is required", field=name)
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise InvalidInput(f"{name} must be a non-negative integer", field=name)
    value = int(raw)
    if not lo <= value <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}", field=name)
    return value


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )
