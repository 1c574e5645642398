"""The server's one middleware: every failure answered as a JSON error (``server.errors``),
every request counted and timed by route (``server.metrics.HttpStats``).

One layer rather than two: on the single-order path each middleware is a coroutine frame
created per request and resumed again after the group commit.
"""

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from server.errors import response_for
from server.metrics import HttpStats


def middleware(stats: HttpStats) -> Middleware:
    observe = stats.observe
    clock = time.perf_counter

    @web.middleware
    async def serve(request: web.Request, handler: Handler) -> web.StreamResponse:
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
            resource = request.match_info.route.resource
            name = resource.canonical if resource is not None else "unmatched"
            observe(request.method, name, status, clock() - started)

    return serve
