"""The HTTP API, one module of routes per capability, registered here: a new capability's
routes are one more line of ``CAPABILITIES``.

Each route declares its operation next to its handler (``pyorder.server.operations``); the OpenAPI
document is generated from the router (``pyorder.server.openapi``).
"""

from typing import Any

from aiohttp import web

from pyorder.server.api import (
    catalog,
    logistics,
    orders,
    payments,
    reference,
    returns,
    reviews,
    risk,
    service,
    webhooks,
)
from pyorder.server.forwarding import Forwarder, forwarding, locator_of
from pyorder.server.openapi import document

CAPABILITIES: tuple[web.RouteTableDef, ...] = (
    catalog.routes,
    orders.routes,
    payments.routes,
    logistics.routes,
    returns.routes,
    webhooks.routes,
    risk.routes,
    reviews.routes,
    service.routes,
    reference.routes,
)
"""The routes of each capability, in the order they are matched."""


def routes(forwarder: Forwarder | None = None) -> list[web.AbstractRouteDef]:
    """Every route of the API, its handler not wrapped yet (``pyorder.server.handling``). On a
    cluster node (``forwarder`` given), a route declared ``routed`` runs on the node its
    locator finds (``pyorder.server.forwarding``)."""
    found: list[web.AbstractRouteDef] = []
    for table in CAPABILITIES:
        for route in table:
            if forwarder is not None and isinstance(route, web.RouteDef):
                handler = route.handler
                locate = locator_of(handler)
                if locate is not None:
                    handler = forwarding(handler, locate, forwarder)
                route = web.RouteDef(route.method, route.path, handler, route.kwargs)
            found.append(route)
    return found


def router() -> web.UrlDispatcher:
    """A router of ``routes`` alone, without an app (for tools and tests)."""
    found = web.UrlDispatcher()
    found.add_routes(routes())
    return found


def reference_document() -> dict[str, Any]:
    """The OpenAPI document of ``routes``, without an app (for tools and tests)."""
    return document(router().routes())
