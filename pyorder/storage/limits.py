"""What one row may hold so that both stores can write it: the staging guard.

Group commit writes many requests' rows in one transaction, so one value the database refuses
would fail everyone's commit (and the rebuild would answer 503 to the others). Every external
input is validated where it enters (API bodies in ``pyorder.server.bodies`` and
``pyorder/server/api/*_bodies.py``, provider and carrier documents in ``pyorder.payments.schemas`` and
``pyorder.logistics.schemas``); as defence in
depth, the services call ``check_row`` on each record *before* they change their memory or stage
it, and a value no store could hold is refused there, as that one request's error
(``Unstorable``, 422), never as a failed commit.

What a store refuses: an integer outside the signed 64 bits of ``BIGINT``/``INTEGER``, text with
U+0000 (PostgreSQL's ``text`` and ``jsonb``) or with a lone surrogate (not UTF-8: neither driver
can encode it), and, here, text or bytes longer than ``MAX_TEXT``/``MAX_BYTES``. Orders placed
by the Rust intake (``WriteBatch.placed``) are not checked again here: the Rust parser has
validated them, and the batch path must not get a Python object per order.
"""

import dataclasses
import math

from pyorder.kernel.errors import InvalidInput

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
MAX_TEXT = 1 << 20
"""Characters in one text value (far above any field the API or a provider may send)."""
MAX_BYTES = 4 << 20
"""Bytes in one binary value (a stored response body)."""
MAX_DEPTH = 16
"""Nesting of containers (lists, dicts, nested records) in one value."""


class Unstorable(InvalidInput):
    """A value of the request's data that the database could not hold."""

    code = "unstorable_value"


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


def check_row(record: object) -> None:
    """Raise ``Unstorable`` (naming the field) unless every value of ``record``, a dataclass of
    the model, can be written by both stores."""
    kind = type(record)
    for name in _field_names(kind):
        value = getattr(record, name)
        # Fast paths for what most fields are (short ASCII text, small ints), with no string
        # built for the field's name unless the value is refused.
        t = type(value)
        if t is str:
            if len(value) <= MAX_TEXT and value.isascii() and "\x00" not in value:
                continue
        elif t is int:
            if I64_MIN <= value <= I64_MAX:
                continue
        elif value is None or t is bool:
            continue
        _check(value, f"{kind.__name__}.{name}", 0)


def check_value(value: object, where: str) -> None:
    """``check_row`` for one value that is not a record (``where`` names it)."""
    _check(value, where, 0)


def _check(value: object, where: str, depth: int) -> None:
    # Most values are short ASCII strings and small ints: test those first.
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not I64_MIN <= value <= I64_MAX:
            raise Unstorable(f"{where} is out of the 64-bit integer range", field=where)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Unstorable(f"{where} is not a finite number", field=where)
    elif isinstance(value, bytes | bytearray | memoryview):
        if len(value) > MAX_BYTES:
            raise Unstorable(f"{where} is longer than {MAX_BYTES} bytes", field=where)
    elif depth >= MAX_DEPTH:
        raise Unstorable(f"{where} is nested more than {MAX_DEPTH} deep", field=where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, where, depth + 1)
            _check(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check(item, where, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for name in _field_names(type(value)):
            _check(getattr(value, name), f"{where}.{name}", depth + 1)


def _check_text(value: str, where: str) -> None:
    if len(value) > MAX_TEXT:
        raise Unstorable(f"{where} is longer than {MAX_TEXT} characters", field=where)
    if "\x00" in value:
        raise Unstorable(f"{where} contains the character U+0000", field=where)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Unstorable(
                f"{where} is not valid UTF-8 (a lone surrogate)", field=where
            ) from None
