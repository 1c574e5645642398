"""What each route declares next to its handler for the OpenAPI document.

A handler is decorated with ``@operation(...)`` (summary, OK status, msgspec types, errors,
parameters) or ``@undocumented(reason)``; ``pyorder.server.openapi`` walks the router and joins each
route (method, path) with what its handler declares. A handler that declares nothing fails
the document's generation, hence the app's creation.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyorder.server.params import Param

AUTH_ERRORS = (401, 403)
"""No or a bad bearer token; a caller whose role may not do this."""
BODY_ERRORS = (400, 413, 422)
"""Not JSON, larger than the server takes, or breaking its schema."""


@dataclass(frozen=True)
class Operation:
    summary: str
    ok: int
    """The status of success."""
    response: type | None
    """The msgspec type of the OK answer (None: ``text`` or no body)."""
    body: type | None = None
    """The msgspec type of the request body, if it takes one."""
    errors: tuple[int, ...] = ()
    """The error statuses it answers, each with an ``ErrorOut`` body."""
    params: tuple[Param, ...] = ()
    """Its path and query parameters, in the document's order."""
    auth: bool = True
    """A bearer token is required (the document's ``security``)."""
    idempotent_key: bool = False
    """It takes an ``Idempotency-Key`` header (``pyorder.server.idempotency``)."""
    sheds: bool = False
    """Answers 503 ``overloaded`` with ``Retry-After`` past the admission bound
    (``pyorder.server.admission``)."""
    text: str = ""
    """The OK response's media type when it is text, not JSON."""
    also_ok: tuple[int, ...] = ()
    """Other statuses of success with the same answer (a create that found one already)."""


@dataclass(frozen=True)
class Undocumented:
    """A route left out of the document on purpose, and why."""

    reason: str


Declared = Operation | Undocumented
H = TypeVar("H", bound=Callable[..., Any])
_ATTRIBUTE = "__pyorder_operation__"


def operation(
    summary: str,
    ok: int,
    response: type | None,
    body: type | None = None,
    errors: tuple[int, ...] = (),
    params: tuple[Param, ...] = (),
    *,
    auth: bool = True,
    idempotent_key: bool = False,
    sheds: bool = False,
    text: str = "",
    also_ok: tuple[int, ...] = (),
) -> Callable[[H], H]:
    """Declare the decorated handler's operation (see ``Operation``)."""
    declared = Operation(
        summary, ok, response, body, errors, params, auth, idempotent_key, sheds, text, also_ok
    )
    return lambda handler: _declare(handler, declared)


def undocumented(reason: str) -> Callable[[H], H]:
    """Leave the decorated handler's routes out of the document, for ``reason``."""
    return lambda handler: _declare(handler, Undocumented(reason))


def _declare(handler: H, declared: Declared) -> H:
    setattr(handler, _ATTRIBUTE, declared)
    return handler


def declared(handler: Callable[..., Any]) -> Declared | None:
    """What ``handler`` (or the handler it wraps, see ``pyorder.server.handling``) declares."""
    inner = inspect.unwrap(handler, stop=lambda f: hasattr(f, _ATTRIBUTE))
    found = getattr(inner, _ATTRIBUTE, None)
    return found if isinstance(found, (Operation, Undocumented)) else None
