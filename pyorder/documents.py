"""Decoding what a peer (a payment provider, a carrier) sends us: signed webhook bodies and the
answers to our calls, into the msgspec types of ``pyorder.payments.schemas`` and
``pyorder.logistics.schemas``.

A document is decoded in full before anything is applied or staged. Whatever is wrong with it
(not JSON or not UTF-8, larger than ``MAX_DOCUMENT``, nested too deep, a value of the wrong type
or out of range) raises ``InvalidDocument`` with the path of the value when there is one
(``Expected `int`, got `float` - at `$.sequence```).
"""

from typing import Annotated, TypeVar

import aiohttp
import msgspec
from msgspec import Meta

MAX_DOCUMENT = 256 * 1024
"""Largest webhook body or answer we read (bytes)."""

T = TypeVar("T")

NoNul = Meta(pattern=r"^[^\x00]*$")
"""Text the stores can hold: PostgreSQL's ``text`` refuses U+0000."""
ObjectId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,255}$")]
"""A peer's id of an event or an object: it may go into the URL path of a later call, so
nothing but letters, digits and ``_.:-``."""
MaybeId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{0,255}$")]
"""An ``ObjectId`` or empty (a reference not known yet)."""
EventType = Annotated[str, Meta(pattern=r"^[a-z_.]{1,100}$")]
Text = Annotated[str, Meta(max_length=1000), NoNul]


class EventData(msgspec.Struct, frozen=True):
    object: msgspec.Raw
    """Decoded by the event's type, once the envelope is."""


class Event(msgspec.Struct, frozen=True):
    """A signed webhook event of a provider or a carrier (``sandbox.webhooks``):
    ``{"id", "type", "data": {"object": ...}}``; its other fields are ignored."""

    id: ObjectId
    type: EventType
    data: EventData


class InvalidDocument(ValueError):
    """A peer's document is not what its API promises (the message says what and where)."""


def decode(raw: bytes | msgspec.Raw, kind: type[T]) -> T:
    """``raw`` (JSON) as ``kind``; ``InvalidDocument`` naming what is wrong and where."""
    if len(raw) > MAX_DOCUMENT:
        raise InvalidDocument(f"larger than {MAX_DOCUMENT} bytes")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidDocument(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidDocument(f"not JSON: {exc}") from None
    except RecursionError:  # msgspec skips ignored fields recursively
        raise InvalidDocument("nested too deep") from None


async def read_answer(response: aiohttp.ClientResponse) -> bytes:
    """The body of a peer's answer, at most ``MAX_DOCUMENT + 1`` bytes of it (``decode`` then
    refuses a longer one): a peer cannot make us hold an endless answer in memory."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_DOCUMENT:
        chunk = await response.content.read(64 * 1024)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class ErrorInfo(msgspec.Struct, frozen=True):
    code: Text | None = None
    message: Text | None = None


class ErrorAnswer(msgspec.Struct, frozen=True):
    """The body of a peer's refusal: ``{"error": {"code", "message", ...}}``."""

    error: ErrorInfo | None = None

    def describe(self) -> str:
        """``code: message`` of the error, or "" when the answer carries none."""
        if self.error is None:
            return ""
        return f"{self.error.code}: {self.error.message}"


def config_error(exc: msgspec.ValidationError, where: str) -> ValueError:
    """A configuration file's or option's error for a person: msgspec's message (``Expected
    `int`, got `str` - at `$.providers[0].priority```) after the field's name spelled out."""
    text = str(exc)
    _, at, path = text.rpartition(" - at `$")
    field = path.rstrip("`").lstrip(".") if at else ""
    return ValueError(f"{where}{field + ': ' if field else ''}{text}")
