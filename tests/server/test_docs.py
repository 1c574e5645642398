"""The API reference page (``/docs``, Swagger UI over ``/v1/openapi.json``) and its assets,
served over a real server on loopback: public, cached, and only the assets it names. Static
files, no store: on SQLite only (``HTTP_ONLY``)."""

import re

import pytest

from pyorder.server.api.reference import ASSET_CACHE, ASSETS, PAGE_CACHE, swagger_ui_dir
from tests.server.e2e_lib import HTTP_ONLY, Server

pytestmark: list[pytest.MarkDecorator] = [HTTP_ONLY]


def test_docs_page_is_public_cached_html_reading_the_document(server: Server) -> None:
    resp = server.call("GET", "/docs")
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "text/html; charset=utf-8", resp.headers
    assert resp.headers["cache-control"] == PAGE_CACHE
    page = resp.body.decode()
    assert 'url: "/v1/openapi.json"' in page
    assert "SwaggerUIBundle(" in page
    document = server.ok("GET", "/v1/openapi.json", token=None)
    assert document["openapi"].startswith("3.1")


def test_every_asset_the_page_names_is_served_from_the_distribution(server: Server) -> None:
    page = server.call("GET", "/docs").body.decode()
    urls = re.findall(r'(?:href|src)="(/docs/[^"]+)"', page)
    names = {url.split("?")[0].removeprefix("/docs/") for url in urls}
    assert names == ASSETS
    types = {  # as the machine's mimetypes say: either name of JavaScript
        ".css": ("text/css",),
        ".js": ("text/javascript", "application/javascript"),
        ".png": ("image/png",),
    }
    for url in urls:
        name = url.split("?")[0].removeprefix("/docs/")
        resp = server.call("GET", url)
        assert resp.status == 200, (url, resp)
        assert resp.headers["content-type"].startswith(types[name[name.rindex(".") :]]), url
        assert resp.headers["cache-control"] == ASSET_CACHE, url
        assert resp.body == (swagger_ui_dir() / name).read_bytes(), url
    bundle = server.call("GET", "/docs/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.body[:2000]
    again = server.call(
        "GET", "/docs/swagger-ui-bundle.js", headers={"If-None-Match": bundle.headers["etag"]}
    )
    assert again.status == 304, again
    assert again.body == b""


def test_docs_serves_no_other_file(server: Server) -> None:
    for path in (
        "/docs/swagger-ui.js.map",
        "/docs/index.css",
        "/docs/VERSION",
        "/docs/..%2F__init__.py",
        "/docs/%2E%2E%2Fflask_swagger_ui.py",
    ):
        resp = server.call("GET", path)
        assert resp.status == 404, (path, resp)
        assert resp.error_code == "not_found", path
