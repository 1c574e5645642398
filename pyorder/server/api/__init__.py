"""The HTTP API, one module of routes per capability, registered here: a new capability's
routes are one more line of ``CAPABILITIES``.

Each route declares its operation next to its handler (``pyorder.server.operations``); the OpenAPI
document is generated from the router (``pyorder.server.openapi``).
"""

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pyorder.kernel.errors import DomainError
from pyorder.server.api import (
    catalog,
    logistics,
    orders,
    payments,
    reference,
    returns,
    service,
    webhooks,
)
from pyorder.server.openapi import document

CAPABILITIES: tuple[web.RouteTableDef, ...] = (
    catalog.routes,
    orders.routes,
    payments.routes,
    logistics.routes,
    returns.routes,
    webhooks.routes,
    service.routes,
    reference.routes,
)
"""The routes of each capability, in the order they are matched."""


NOT_IN_CLUSTER: tuple[web.RouteTableDef, ...] = (
    payments.routes,
    logistics.routes,
    returns.routes,
    webhooks.routes,
)
"""Capabilities whose state lives in each node's memory for every order, and that a cluster node
therefore cannot serve yet: a request reaching a node other than its order's would act on a
stale copy (``docs/scale-out.md``, "Not built yet")."""


class UnsupportedInCluster(DomainError):
    code = "unsupported_in_cluster_mode"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refused(handler: Handler) -> Handler:
    @functools.wraps(handler)  # keeps the declared operation (``pyorder.server.operations``)
    async def refuse(request: web.Request) -> web.StreamResponse:
        raise UnsupportedInCluster(
            "payments, logistics, returns and webhook endpoints are not served by cluster nodes"
            " yet"
            " (docs/scale-out.md): run one node in solo mode for them"
        )

    return refuse


def routes(*, cluster: bool = False) -> list[web.AbstractRouteDef]:
    """Every route of the API, its handler not wrapped yet (``pyorder.server.handling``); on a
    cluster node, those of ``NOT_IN_CLUSTER`` refuse (501)."""
    found: list[web.AbstractRouteDef] = []
    for table in CAPABILITIES:
        for route in table:
            if (
                cluster
                and any(table is t for t in NOT_IN_CLUSTER)
                and isinstance(route, web.RouteDef)
            ):
                route = web.RouteDef(
                    route.method, route.path, _refused(route.handler), route.kwargs
                )
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
