"""Every route's handler wrapped once: a failure is answered as a JSON error
(``pyorder.server.errors``), and every request is counted and timed by route
(``pyorder.server.metrics.HttpStats``). A request no route takes gets the same treatment from a last,
catch-all route: 405 with ``Allow`` when the path exists for other methods, else 404.

A wrapper per route rather than an aiohttp middleware: with any middleware aiohttp adds one of
its own, and each is a coroutine created per request and resumed again after the group commit;
the two took ~5 % of the event loop's CPU per single order (interleaved A/B, 2 cores).
"""

import functools
import time
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from pyorder.server.errors import response_for
from pyorder.server.metrics import HttpStats
from pyorder.server.operations import undocumented

UNMATCHED = "unmatched"
"""The route name of requests no route takes, in metrics."""


def handled(stats: HttpStats, routes: Iterable[web.AbstractRouteDef]) -> list[web.RouteDef]:
    """``routes`` with their handlers wrapped (see the module), then the catch-all route."""
    wrapped = []
    for route in routes:
        if not isinstance(route, web.RouteDef):
            raise TypeError(f"only plain routes can be wrapped, not {route!r}")
        handler = _wrap(stats, route.handler, route.path)
        wrapped.append(web.RouteDef(route.method, route.path, handler, route.kwargs))
    wrapped.append(web.route("*", "/{unmatched:.*}", _wrap(stats, _unmatched, UNMATCHED)))
    return wrapped


def _wrap(stats: HttpStats, handler: Handler, route: str) -> Handler:
    observe = stats.observe
    clock = time.perf_counter

    @functools.wraps(handler)
    async def serve(request: web.Request) -> web.StreamResponse:
        started = clock()
        status = 500
        try:
            try:
                response = await handler(request)
            except Exception as exc:
                response = response_for(request, exc)
            status = response.status
            return response
        finally:
            observe(request.method, route, status, clock() - started)

    return serve


@undocumented("answers the requests no route takes (404 or 405)")
async def _unmatched(request: web.Request) -> web.StreamResponse:
    allowed: set[str] = set()
    itself = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is itself:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()
