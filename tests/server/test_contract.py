"""The OpenAPI document against the router it is generated from: every route of the app's
router is in the document, or declares why it is not, and the document names nothing the
router does not route."""

import json
import re
from pathlib import Path

import pytest
from aiohttp import web

from pyorder.platform import Config
from pyorder.server.api import reference_document
from pyorder.server.api.service_bodies import HealthOut
from pyorder.server.app import create_app
from pyorder.server.keys import OPENAPI
from pyorder.server.openapi import SKIPPED_METHODS, document
from pyorder.server.operations import Undocumented, declared, operation
from pyorder.server.params import ORDER_ID

LEFT_OUT = {
    ("GET", "/v1/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/{asset}"),
    ("*", "/{unmatched}"),
}
"""The routes the document leaves out, each with the reason its handler gives."""


def test_every_route_of_the_router_is_in_the_document_and_back(tmp_path: Path) -> None:
    app = create_app(Config(data_dir=tmp_path), token_secret="s" * 32)
    doc = json.loads(app[OPENAPI])
    in_doc = {(m.upper(), path) for path, item in doc["paths"].items() for m in item}
    routed: set[tuple[str, str]] = set()
    left_out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method in SKIPPED_METHODS:
            continue
        assert route.resource is not None
        key = (route.method, route.resource.canonical)
        what = declared(route.handler)
        assert what is not None, f"{key}: declares no operation"
        if isinstance(what, Undocumented):
            assert what.reason, key
            left_out.add(key)
        else:
            routed.add(key)
    assert routed - in_doc == set(), "routes missing from the document"
    assert in_doc - routed == set(), "documented operations no route serves"
    assert left_out == LEFT_OUT


def test_component_names_are_the_bodies_class_names() -> None:
    """Each schema of the document is named by its Struct's class name alone. msgspec names two
    classes of one name by their module paths instead (``pyorder.server.api.x_bodies.Foo``), which
    would rename a published component whenever a body moves between modules: two
    capabilities' bodies must not share a name."""
    names = reference_document()["components"]["schemas"]
    assert names
    assert [n for n in names if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", n)] == []


async def _handler(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_that_declares_nothing_fails_the_document() -> None:
    router = web.UrlDispatcher()
    router.add_get("/v1/things", _handler)
    with pytest.raises(LookupError, match="GET /v1/things"):
        document(router.routes())


def test_declared_path_parameters_must_be_the_paths() -> None:
    """A path parameter renamed in the route but not in its declaration fails the document."""
    handler = operation("Read a thing", 200, HealthOut, params=(ORDER_ID,))(_handler)
    router = web.UrlDispatcher()
    router.add_get("/v1/things/{thing_id}", handler)
    with pytest.raises(ValueError, match="thing_id"):
        document(router.routes())
    good = web.UrlDispatcher()
    good.add_get("/v1/things/{order_id}", handler)
    params = document(good.routes())["paths"]["/v1/things/{order_id}"]["get"]["parameters"]
    assert params == [
        {
            "name": "order_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        }
    ]
