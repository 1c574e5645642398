"""The Rust parser of order bodies accepts exactly what the published schema describes.

Bodies are generated from the OpenAPI document's request schemas of ``POST /v1/orders``
(``OrderIn``) and ``POST /v1/orders/batch`` (``OrderBatchIn``), by walking the JSON Schema
(``hypothesis-jsonschema`` does not run on this Hypothesis), then mutated at a random place:
a value of another type, an array for an object and the other way round, a missing, unknown or
repeated field, numbers out of range, floats and ``-0`` for integers, strings too long, with
U+0000 or a final newline, escapes, nesting, and bytes that are not JSON or not UTF-8.

The oracle is what every other route does: ``pyorder.server.requests.decode``, msgspec with the types
the document is generated from. For each body the Rust intake (``OrderBook.place_one`` /
``place_batch``) and the oracle must agree on accept or refuse, on the kind of refusal (400
``malformed_json``, 422 ``invalid_input``) and, for a 422, on the message and on
``details.path``: msgspec's format, ``$`` for the body, then ``.field`` and ``[index]``, naming the object that holds a
missing or unknown field. Only the parser is compared: a body it accepts may still be refused
by the catalogue (unknown SKU or region), which never sets ``details.path``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyorder._core import OrderBook, OrderRows
from pyorder.ids import OrderIdGenerator
from pyorder.inventory import Inventory
from pyorder.kernel.errors import InvalidInput, MalformedJson
from pyorder.server.api import reference_document
from pyorder.server.api.orders_bodies import OrderBatchIn, OrderIn
from pyorder.server.bodies import NO_NUL
from pyorder.server.requests import decode

DOC = reference_document()
COMPONENTS: dict[str, Any] = DOC["components"]["schemas"]
T0 = 1_796_100_000_000


def request_schema(path: str) -> dict[str, Any]:
    """The JSON Schema of the body of ``POST path`` in the published document."""
    return DOC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = COMPONENTS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


# --- documents: a small JSON model that can say what json.dumps cannot -------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: ``-0``, ``1.0``, ``1e400``, escapes, invalid surrogates."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A JSON object as (key, value) pairs, in order: a key may repeat; a key may be ``Raw``."""

    pairs: tuple[tuple[str | Raw, Any], ...]


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        return (
            "{"
            + ",".join(
                (k.text if isinstance(k, Raw) else json.dumps(k, ensure_ascii=False))
                + ":"
                + dump(v)
                for k, v in value.pairs
            )
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# --- valid documents, from the schema ---------------------------------------------------------

NOT_NUL = st.characters(exclude_characters="\x00")


def valid(schema: dict[str, Any], longest: bool = True) -> st.SearchStrategy[Any]:
    """Documents the schema accepts, boundaries included (arrays of the longest length allowed
    only where ``longest``: not inside another one, which would make bodies of megabytes)."""
    schema = resolve(schema)
    kind = schema["type"]
    if kind == "object":
        props: dict[str, Any] = schema["properties"]
        required = set(schema.get("required", ()))

        @st.composite
        def obj(draw: st.DrawFn) -> Obj:
            keys = [k for k in props if k in required or draw(st.booleans())]
            keys = draw(st.permutations(keys))
            return Obj(tuple((k, draw(valid(props[k], longest))) for k in keys))

        return obj()
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema["maxItems"]
        some = st.lists(valid(schema["items"], longest), min_size=lo, max_size=min(hi, lo + 3))
        if not longest:
            return some
        return st.one_of(some, valid(schema["items"], False).map(lambda x: [x] * hi))
    if kind == "integer":
        lo, hi = schema["minimum"], schema["maximum"]
        return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))
    assert kind == "string", schema
    lo, hi = schema.get("minLength", 0), schema.get("maxLength", 10_000)
    pattern = schema.get("pattern")
    if pattern is None or pattern == NO_NUL:
        return st.one_of(
            st.text(NOT_NUL, min_size=lo, max_size=min(hi, lo + 12)),
            st.text(NOT_NUL, min_size=hi, max_size=hi),
            st.just("字" * hi),
        )
    return st.from_regex(pattern).filter(lambda s: lo <= len(s) <= hi)


# --- mutations ---------------------------------------------------------------------------------


def fits(value: Any, schema: dict[str, Any]) -> bool:
    """``value`` has the JSON type of ``schema`` (a mutation may have changed it)."""
    kind = schema["type"]
    if kind == "object":
        return isinstance(value, Obj)
    if kind == "array":
        return isinstance(value, list)
    if kind == "integer":
        return type(value) is int
    return isinstance(value, str)


def places(doc: Any, schema: dict[str, Any], path: tuple[Any, ...] = ()) -> list[Any]:
    """Every (path, value, schema) of ``doc`` whose value still has its schema's type; a path
    step is a pair index (objects) or an item index (arrays, the first three)."""
    schema = resolve(schema)
    if not fits(doc, schema):
        return []
    found = [(path, doc, schema)]
    if isinstance(doc, Obj):
        for i, (k, v) in enumerate(doc.pairs):
            sub = schema["properties"].get(k) if isinstance(k, str) else None
            if sub is not None:
                found += places(v, sub, (*path, i))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            found += places(v, schema["items"], (*path, i))
    return found


def replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(doc, Obj):
        pairs = list(doc.pairs)
        k, v = pairs[head]
        pairs[head] = (k, replace(v, rest, new))
        return Obj(tuple(pairs))
    items = list(doc)
    items[head] = replace(items[head], rest, new)
    return items


OTHER_TYPES: list[Any] = [None, True, False, 0, -1, 1.5, "x", "", [], Obj(()), Raw("1.0")]


def mutants(value: Any, schema: dict[str, Any]) -> list[Any]:
    """What may stand at a place of ``schema`` instead of ``value``: mostly wrong, some right."""
    out: list[Any] = [*OTHER_TYPES, [value], Obj((("value", value),))]
    kind = schema["type"]
    if not fits(value, schema):
        return out
    if kind == "object":
        props, pairs = schema["properties"], value.pairs
        out.append(Obj(()))
        out.append([v for _, v in pairs])  # the tester's shape: the fields as an array
        out.append([[k, v] for k, v in pairs])
        out.append(Obj((*pairs, ("unknown", 1))))
        out.append(Obj((*pairs, (next(iter(props)).upper(), 1))))
        for i, (k, v) in enumerate(pairs):
            out.append(Obj(pairs[:i] + pairs[i + 1 :]))  # a field missing
            out.append(Obj((*pairs, (k, v))))  # repeated, same value
            out.append(Obj(((k, None), *pairs)))  # repeated: a bad value, then a good one
            out.append(Obj((*pairs, (k, None))))  # repeated: a good value, then a bad one
            if isinstance(k, str):
                escaped = "".join(f"\\u{ord(c):04x}" for c in k)
                out.append(Obj((*pairs[:i], (Raw(f'"{escaped}"'), v), *pairs[i + 1 :])))
    elif kind == "array":
        lo, hi = schema.get("minItems", 0), schema["maxItems"]
        out += [[], value[:lo], value[: lo - 1] if lo else value, [value]]
        if value:
            out += [[value[0]] * (hi + 1), [*value, None], [None, *value]]
    elif kind == "integer":
        lo, hi = schema["minimum"], schema["maximum"]
        out += [lo - 1, hi + 1, -lo, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30)]
        out += [Raw(t) for t in (f"{value}.0", f"{value}e0", f"{value}E+0", "-0", "-0.0", "1e400")]
        out += [str(value), float(value), Raw(f"{value} "), Raw(f"-{value}"), Raw("0.0")]
        out += [Raw("[1,"), Raw('{"a":'), Raw("123456789012345678901234567890")]  # not JSON after
    else:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", 10_000)
        out += ["", "x" * (hi + 1), "字" * (hi + 1), "字" * max(lo, min(hi, 3))]
        out += [value + "\x00", "\x00" + value, value + "\n", "\n" + value, value + " "]
        out += [value.lower(), value.upper(), value + "\u2028", value * 2]
        out += [Raw(json.dumps(value, ensure_ascii=True)), Raw('"\\ud800"'), Raw('"\\udc00"')]
        out += [Raw('"\\ud83d\\ude00"'), Raw('"\\u0000"'), Raw('"\\x"'), Raw('"\t"')]
    return out


TEXT_MUTATIONS = [
    lambda b: b + b" x",
    lambda b: b + b"}",
    lambda b: b"  \n" + b + b"\t ",
    lambda b: b[: len(b) // 2],
    lambda b: b[:-1],
    lambda b: b"\xef\xbb\xbf" + b,
    lambda b: b.replace(b'"', b'"\xff', 1),
    lambda b: b.replace(b":", b" : ", 2),
    lambda b: b"[" + b + b"]",
    lambda b: b"[" + b + b"," + b + b"]",
]


@st.composite
def bodies(draw: st.DrawFn, schema: dict[str, Any]) -> bytes:
    doc = draw(valid(schema))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        path, value, sub = draw(
            st.sampled_from(places(doc, schema) or [((), doc, resolve(schema))])
        )
        doc = replace(doc, path, draw(st.sampled_from(mutants(value, sub))))
    body = dump(doc).encode("utf-8", "surrogatepass")
    if draw(st.sampled_from([False, False, False, False, True])):  # mangled as bytes too
        body = draw(st.sampled_from(TEXT_MUTATIONS))(body)
    return body


# --- the two sides -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """``accepted`` (status 0), or the refusal's status and, for a 422, path and message."""

    status: int
    path: str | None = None
    message: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 0


def oracle(body: bytes, kind: type[Any]) -> Verdict:
    try:
        decode(body, kind)
    except InvalidInput as exc:
        return Verdict(422, exc.details["path"], exc.message)
    except MalformedJson:
        return Verdict(400)
    return Verdict(0)


def make_book() -> OrderBook:
    inventory = Inventory()
    inventory.add_warehouse()
    book = OrderBook(inventory, OrderIdGenerator(5), 15 * 60 * 1000)
    inventory.set_region(0, [0])
    book.set_region("north", 0)
    for _ in range(4):
        book.set_sku(inventory.add_sku({0: 10**12}), 100, "CNY", "merchant:m")
    return book


BOOK = make_book()


def rust(body: bytes, single: bool) -> Verdict:
    place = BOOK.place_one if single else BOOK.place_batch
    status, out, _, _ = place(body, "buyer", 1, OrderRows(), T0)
    answer: dict[str, Any] = orjson.loads(out)
    error: dict[str, Any] = answer.get("error") or {}
    if status == 400:
        assert error["code"] == "malformed_json", answer
        return Verdict(400)
    if status == 422 and "path" in error.get("details", {}):
        assert error["code"] == "invalid_input", answer
        path = error["details"]["path"]
        assert path == "$" or error["message"].endswith(f" - at `{path}`"), answer
        return Verdict(422, path, error["message"])
    # Past the parser: an order (201), a catalogue refusal, or a batch's results (200).
    assert status in (200, 201, 409, 422), answer
    return Verdict(0)


SINGLE = request_schema("/v1/orders")
BATCH = request_schema("/v1/orders/batch")
CASES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.long
@CASES
@given(bodies(SINGLE))
def test_single_order_bodies_are_judged_as_the_schema_judges_them(body: bytes) -> None:
    assert rust(body, single=True) == oracle(body, OrderIn), body


@pytest.mark.long
@CASES
@given(bodies(BATCH))
def test_batch_bodies_are_judged_as_the_schema_judges_them(body: bytes) -> None:
    assert rust(body, single=False) == oracle(body, OrderBatchIn), body


def test_the_schemas_are_the_ones_the_parser_follows() -> None:
    """The generator walks the published document: the body schemas are the msgspec types."""
    assert SINGLE == {"$ref": "#/components/schemas/OrderIn"}
    assert BATCH == {"$ref": "#/components/schemas/OrderBatchIn"}
    address = COMPONENTS["AddressIn"]
    assert address["additionalProperties"] is False
    assert address["properties"]["country"]["pattern"] == "^[A-Z]{2}$(?!\\n)"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"lines": [[1, 1]], "address": {}}', "$.lines[0]"),
        (
            b'{"lines": [{"sku": 1, "quantity": 1}], "address": ["A", "1", "X", "north"]}',
            "$.address",
        ),
        (
            b'[[{"sku": 1, "quantity": 1}], {"name": "A", "line1": "1", "city": "X", "region": "north"}]',
            "$",
        ),
    ],
)
def test_arrays_for_objects_are_refused_at_their_path(body: bytes, path: str) -> None:
    """The outside tester's three shapes: serde's derive built structs from arrays."""
    got = rust(body, single=True)
    assert got == oracle(body, OrderIn)
    assert (got.status, got.path) == (422, path)
    batch = b'{"orders": [' + body + b"]}"
    got = rust(batch, single=False)
    assert got == oracle(batch, OrderBatchIn)
    assert (got.status, got.path) == (422, "$.orders[0]" + path[1:])
