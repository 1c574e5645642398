"""The API's reference: the OpenAPI document (``/v1/openapi.json``, generated when the app is
created, see ``pyorder.server.openapi``) and a page people can read and try it with (``/docs``,
Swagger UI).

Swagger UI's assets come from the ``flask-swagger-ui`` distribution, which ships them as files
(``flask_swagger_ui/dist``): they are served from there, and neither that package nor Flask is
imported. Both are public (the document says nothing a caller could not learn by trying) and
cached: the page briefly, the assets for a week under URLs that carry Swagger UI's version.
"""

import functools
import importlib.util
from pathlib import Path

from aiohttp import web

from pyorder.server.keys import OPENAPI
from pyorder.server.operations import undocumented

routes = web.RouteTableDef()

ASSETS = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
)
"""The files of Swagger UI's distribution that ``/docs/{asset}`` serves; nothing else."""
PAGE_CACHE = "public, max-age=300"
ASSET_CACHE = "public, max-age=604800"
_REFERENCE = "a page for people (Swagger UI) and its assets, not an operation of the API"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pyorder API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css?v={version}">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png?v={version}" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png?v={version}" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js?v={version}"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
}});
</script>
</body>
</html>
"""
"""Swagger UI's page, reading ``/v1/openapi.json``; ``?v=`` changes with Swagger UI's version,
so that a cached asset is never taken for a newer one."""


@functools.cache
def swagger_ui_dir() -> Path:
    """The directory of Swagger UI's distribution, found without importing its package."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Swagger UI's assets need the flask-swagger-ui distribution")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


@functools.cache
def _page() -> bytes:
    version = (swagger_ui_dir() / "VERSION").read_text().strip()
    return _PAGE.format(version=version).encode()


@routes.get("/v1/openapi.json")
@undocumented("the document itself")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


@routes.get("/docs")
@undocumented(_REFERENCE)
async def docs_page(request: web.Request) -> web.Response:
    """Swagger UI over ``/v1/openapi.json``: read the API and try it (its Authorize button
    takes a bearer token)."""
    response = web.Response(body=_page(), content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = PAGE_CACHE
    return response


@routes.get("/docs/{asset}")
@undocumented(_REFERENCE)
async def docs_asset(request: web.Request) -> web.StreamResponse:
    """One of ``ASSETS`` (404 for any other name), with ``ETag`` and ``Last-Modified`` for
    conditional requests (aiohttp's ``FileResponse``)."""
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise web.HTTPNotFound(text=f"no asset {name!r}")
    return web.FileResponse(swagger_ui_dir() / name, headers={"Cache-Control": ASSET_CACHE})
