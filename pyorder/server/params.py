"""Path and query parameters, each declared once: the handler reads it through its spec and
the OpenAPI document takes its schema from the same spec (``pyorder.server.operations``), so a range
or a pattern cannot differ between what is checked and what is published."""

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Literal, Protocol, TypeVar

from aiohttp import web

from pyorder.kernel.errors import InvalidInput
from pyorder.server.requests import int_param

Where = Literal["path", "query"]

MAX_ID = 2**31 - 1
"""Warehouses, SKUs and webhook endpoints: 32-bit ids."""
MAX_ORDER_ID = 2**63 - 1


class Param(Protocol):
    """What the document needs of a parameter: its name, where it is, its JSON Schema."""

    @property
    def name(self) -> str: ...

    @property
    def where(self) -> Where: ...

    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class IntParam:
    """A non-negative integer between ``lo`` and ``hi``; 422 ``invalid_input`` otherwise."""

    name: str
    where: Where
    lo: int
    hi: int
    default: int | None = None
    """Taken when a query parameter is absent; None: it is required."""

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}

    def get(self, request: web.Request) -> int:
        return int_param(request, self.name, lo=self.lo, hi=self.hi, default=self.default)

    def optional(self, request: web.Request) -> int | None:
        """The query parameter's value, None when it is absent."""
        return self.get(request) if self.name in request.query else None


@dataclass(frozen=True)
class TextParam:
    """A path segment matching ``pattern`` (a regular expression, whole)."""

    name: str
    where: Where
    pattern: str
    message: str
    """Said (422 ``invalid_input``) by ``check`` when a value does not match."""

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{self.pattern}$"}

    def get(self, request: web.Request) -> str:
        """The raw segment, not checked yet: handlers check it where their errors say so."""
        return request.match_info[self.name]

    def check(self, value: str) -> None:
        if not re.fullmatch(self.pattern, value):
            raise InvalidInput(self.message, field=self.name)


E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class EnumParam(Generic[E]):
    """One of the values of a string enum, optional."""

    name: str
    where: Where
    kind: type[E]

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": [x.value for x in self.kind]}

    def optional(self, request: web.Request) -> E | None:
        raw = request.query.get(self.name) if self.where == "query" else None
        if raw is None:
            return None
        try:
            return self.kind(raw)
        except ValueError:
            known = ", ".join(x.value for x in self.kind)
            raise InvalidInput(f"{self.name} is one of {known}", field=self.name) from None


@dataclass(frozen=True)
class PrefixedIntParam:
    """A path segment ``<prefix><n>`` or ``<n>``, n between ``lo`` and ``hi`` (as ids are
    listed with their prefix, and given back either way)."""

    name: str
    where: Where
    prefix: str
    lo: int
    hi: int

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^({self.prefix})?[0-9]{{1,{len(str(self.hi))}}}$"}

    def get(self, request: web.Request) -> int:
        digits = request.match_info[self.name].removeprefix(self.prefix)
        if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(self.hi)):
            raise InvalidInput(f"{self.name} must be {self.prefix}<n> or <n>", field=self.name)
        value = int(digits)
        if not self.lo <= value <= self.hi:
            message = f"{self.name} must be between {self.lo} and {self.hi}"
            raise InvalidInput(message, field=self.name)
        return value


# Parameters shared by several capabilities; the others are next to their routes.
ORDER_ID = IntParam("order_id", "path", 0, MAX_ORDER_ID)
REGION = TextParam(
    "region", "path", r"[A-Za-z0-9_.:-]{1,64}", "a region code has 1 to 64 letters, digits or _.:-"
)
LIMIT_200 = IntParam("limit", "query", 1, 200, default=50)
LIMIT_500 = IntParam("limit", "query", 1, 500, default=50)
PARTNER_NAME = r"[A-Za-z0-9_.-]{1,64}"
"""A payment provider's or a carrier's name in its webhook's path."""
