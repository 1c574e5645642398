"""The API's reference: the OpenAPI document (``/v1/openapi.json``, generated when the app is
created, see ``server.openapi``)."""

from aiohttp import web

from server.keys import OPENAPI
from server.operations import undocumented

routes = web.RouteTableDef()


@routes.get("/v1/openapi.json")
@undocumented("the document itself")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
