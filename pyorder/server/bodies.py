"""What the bodies of more than one capability share: the error body every failure is
answered with, the acknowledgement of a partner's webhook, and the bounded field types (IDs,
quantities, text, region codes, an order ID as a string) with the ``whole()`` pattern helper.

Each capability's own request and response bodies, msgspec Structs, sit next to its routes
(``pyorder/server/api/<capability>_bodies.py``). msgspec decodes JSON straight into them in one pass,
refusing unknown fields, wrong types and out-of-range values (so handlers never see bad input),
and the same types generate the OpenAPI document's schemas, so the document cannot drift from
the code.
"""

from typing import Annotated, Any

import msgspec
from msgspec import Meta


def whole(regex: str) -> str:
    """A pattern that ``regex`` must match the whole string for, read the same by Python's
    ``re`` (which msgspec validates with) and by JSON Schema's ECMA-262 dialect (what the
    OpenAPI document promises): Python's ``$`` also matches before a final newline, so
    ``^[A-Z]{3}$`` alone would let ``"USD\\n"`` through msgspec; ``(?!\\n)`` refuses it."""
    return f"^{regex}$(?!\\n)"


NO_NUL = r"^[^\x00]*$"
"""Pattern of free text: no U+0000 (text columns, PostgreSQL's above all, cannot store it).
The newline that Python's ``$`` lets through is text like any other here."""

Id = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Quantity = Annotated[int, Meta(ge=1, le=10_000)]
Text = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
RegionCode = Annotated[str, Meta(min_length=1, max_length=64, pattern=whole("[A-Za-z0-9_.:-]+"))]
OrderId = Annotated[
    str, Meta(pattern=whole("[0-9]{1,19}"), description="64-bit order ID, as a string")
]


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorOut(msgspec.Struct):
    error: ErrorBody


class WebhookAck(msgspec.Struct):
    received: bool
    duplicate: bool
    event: str
