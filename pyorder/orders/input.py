"""What a caller gives to place an order from Python (``Orders.place``): the lines and a
shipping address, and the refusal of an address whose region is not served."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TypedDict, cast

from pyorder.kernel.errors import InvalidInput


class UnknownRegion(InvalidInput):
    """The address names a region the platform does not deliver to."""

    code = "unknown_region"


@dataclass(frozen=True, slots=True)
class Address:
    """A shipping address, as the API's ``AddressIn`` has it. An optional field left None takes
    the API's default (``country``: ``"CN"``, the others empty); the order shows what it took.

    Checked when the order is placed, by the API's rules: ``name``, ``line1``, ``city`` 1-200
    characters; ``region`` 1-64 of ``A-Za-z0-9_.:-`` (a region the platform delivers to);
    ``postal_code`` up to 20, ``line2`` up to 200, ``phone`` up to 40; ``country`` an ISO
    3166-1 alpha-2 code; none may hold U+0000."""

    name: str
    line1: str
    city: str
    region: str
    postal_code: str | None = None
    country: str | None = None
    line2: str | None = None
    phone: str | None = None


_ADDRESS_FIELDS = frozenset(f.name for f in fields(Address))


class AddressFields(TypedDict, total=False):
    """An address's fields as ``OrderBook.place_order`` takes them (None: not given)."""

    name: str | None
    line1: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None
    line2: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class Context:
    """What the client says of itself, for risk control (the API's ``ContextIn``); each
    1-128 characters without U+0000 when given."""

    device_id: str | None = None
    email_hash: str | None = None
    phone_hash: str | None = None


def address_fields(a: Address | Mapping[str, str]) -> AddressFields:
    """The fields of an address as ``OrderBook.place_order`` takes them; a missing one is the
    core's to default or refuse, an unknown one is refused here, as the API refuses it."""
    if isinstance(a, Address):
        return {
            "name": a.name,
            "line1": a.line1,
            "city": a.city,
            "region": a.region,
            "postal_code": a.postal_code,
            "country": a.country,
            "line2": a.line2,
            "phone": a.phone,
        }
    unknown = sorted(a.keys() - _ADDRESS_FIELDS)
    if unknown:
        raise InvalidInput(
            f"Object contains unknown field `{unknown[0]}` - at `$.address`", path="$.address"
        )
    return cast(AddressFields, a)


@dataclass(frozen=True, slots=True)
class OrderInput:
    """One order as a buyer asks for it: (sku, quantity) lines and a shipping address, an
    ``Address`` or a mapping of its fields (the JSON object of the API's ``AddressIn``)."""

    lines: Sequence[tuple[int, int]]
    address: Address | Mapping[str, str]
    context: Context = field(default_factory=Context)
