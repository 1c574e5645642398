"""Requests about an order, served by the node that holds it (cluster mode, ``docs/scale-out.md``,
"Requests routed to the order's node").

A cluster node holds in memory the state of its own orders only: their reservations (its core),
payments, parcels, returns and calls owed to providers and carriers. A request that changes or
reads that state (paying, refunding, shipping, returning or cancelling an order; a provider's or
carrier's webhook about one) is therefore served by the order's node, the one whose number the
order ID carries; a request reaching another node is forwarded to it over HTTP, as it came (its
method, path, query, headers and body, so the owner authenticates it and checks its signature
itself), and the owner's answer is passed back as it is.

Each route says how its node is found, next to its handler (``routed``): by the order ID in its
path, by the return's order, by the order a webhook's body names, or the leader (webhook
endpoints, whose ids one node hands out). Nodes publish where they take forwarded requests in
``node_leases.url`` (``pyorder-server --peer-listen``); a node number no live node holds gets
503 ``order_node_unavailable`` with ``Retry-After``, until a node claims that number again (a
node restarted without ``--node`` takes the lowest free number, so the dead node's).

A request is forwarded once at most: it carries ``Pyorder-Forwarded-By``, and a node that
receives one for an order it does not hold (the number moved meanwhile) answers 503 rather than
forwarding again.
"""

import functools
import inspect
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from pyorder._core import decode_order_id
from pyorder.kernel.errors import DomainError
from pyorder.logistics import service as logistics
from pyorder.payments import service as payments
from pyorder.payments.schemas import PaymentIntent, metadata_int
from pyorder.payments.schemas import Refund as ProviderRefund
from pyorder.returns.model import parse_return_reference
from pyorder.server.errors import error_response
from pyorder.storage.base import Store

log = logging.getLogger(__name__)

FORWARDED_BY = "Pyorder-Forwarded-By"
"""Header of a forwarded request: the number of the node that forwarded it."""
NOBODY = -1
"""A locator's answer when the node it looks for is not running (no leader right now)."""

Locator = Callable[[web.Request, "Forwarder"], Awaitable[int | None]]
"""Finds the node that serves a request: its number, None for "any node, this one", or
``NOBODY``."""
H = TypeVar("H", bound=Callable[..., Any])
_ROUTED = "__pyorder_routed__"

# Hop-by-hop headers (RFC 9110 section 7.6.1) and those the client library sets itself.
_NOT_FORWARDED = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Date",
        "Server",
    )
)


def routed(locate: Locator) -> Callable[[H], H]:
    """On cluster nodes, the decorated handler runs on the node ``locate`` finds."""

    def declare(handler: H) -> H:
        setattr(handler, _ROUTED, locate)
        return handler

    return declare


def locator_of(handler: Callable[..., Any]) -> Locator | None:
    found = getattr(inspect.unwrap(handler), _ROUTED, None)
    return found if callable(found) else None


class Forwarder:
    """Sends requests on to other nodes of the cluster. ``store`` says where each live node
    takes them (``Store.peer_url``); ``node`` is this node's number, as of now, and
    ``numbers`` those whose orders it serves (its own and the dead nodes' it adopted; default:
    its own)."""

    def __init__(
        self,
        store: Store,
        node: Callable[[], int],
        numbers: Callable[[], frozenset[int]] | None = None,
        *,
        timeout_s: float = 10.0,
        cache_s: float = 2.0,
    ) -> None:
        self.store = store
        self.node = node
        self.numbers = numbers or (lambda: frozenset((node(),)))
        self.timeout_s = timeout_s
        """How long a forwarded request may take, end to end."""
        self.cache_s = cache_s
        """How long a node's address is used before it is read again (a failed request drops
        it at once)."""
        self._urls: dict[int, tuple[str, float]] = {}
        self._leader: tuple[int | None, float] = (None, 0.0)
        self._session: aiohttp.ClientSession | None = None
        self.forwarded: Counter[int] = Counter()
        """Requests sent on, by the node they went to."""
        self.unavailable: Counter[int] = Counter()
        """Requests answered 503 because their node was not running or did not answer."""

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def leader(self) -> int:
        """The leader's number (read at most every ``cache_s``), or ``NOBODY``."""
        found, until = self._leader
        now = time.monotonic()
        if found is None or now >= until:
            found = await self.store.leader_node()
            self._leader = (found, now + self.cache_s)
        return NOBODY if found is None else found

    async def url_of(self, node: int) -> str | None:
        """Where ``node`` takes forwarded requests, or None when no live node holds it."""
        cached = self._urls.get(node)
        now = time.monotonic()
        if cached is not None and now < cached[1]:
            return cached[0]
        url = await self.store.peer_url(node)
        if url is None:
            self._urls.pop(node, None)
        else:
            self._urls[node] = (url, now + self.cache_s)
        return url

    async def forward(self, request: web.Request, node: int) -> web.StreamResponse:
        """``request`` sent to ``node`` as it came; its answer, or 503 when it cannot be had."""
        if request.headers.get(FORWARDED_BY) is not None:
            return self._unavailable(
                node, f"node {node} holds this, but the request was forwarded here: retry"
            )
        url = None if node == NOBODY else await self.url_of(node)
        if url is None:
            what = "no node leads the cluster" if node == NOBODY else f"node {node} is not running"
            return self._unavailable(
                node,
                f"{what}; it is served again once a node takes its number: retry shortly",
            )
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        headers[FORWARDED_BY] = str(self.node())
        try:
            async with self._client().request(
                request.method, url + request.rel_url.path_qs, data=body, headers=headers
            ) as resp:
                payload = await resp.read()
                answer = web.Response(status=resp.status, body=payload)
                for name, value in resp.headers.items():
                    if name.lower() not in _NOT_FORWARDED:
                        answer.headers.add(name, value)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._urls.pop(node, None)
            log.warning(
                "forwarding %s %s to node %d failed: %r", request.method, request.path, node, exc
            )
            # A request that changes something may have run there: the client retries it
            # with its Idempotency-Key, or reads the order, as after any lost answer.
            return self._unavailable(
                node, f"node {node}, which holds this, did not answer ({type(exc).__name__}): retry"
            )
        self.forwarded[node] += 1
        return answer

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    def _unavailable(self, node: int, message: str) -> web.Response:
        self.unavailable[node] += 1
        resp = error_response(503, "order_node_unavailable", message, {"node": node})
        resp.headers["Retry-After"] = "1"
        return resp


class ForwardStats(Collector):
    """``/metrics`` of a cluster node's forwarding: requests sent on to each node, and those
    answered 503 because their node was not running or did not answer."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    def collect(self) -> Iterator[Metric]:
        for name, doc, counts in (
            (
                "pyorder_forwarded_requests",
                "Requests sent on to the node that serves them",
                self.forwarder.forwarded,
            ),
            (
                "pyorder_forward_unavailable",
                "Requests answered 503: their node was not running or did not answer",
                self.forwarder.unavailable,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["node"])
            for node, n in sorted(counts.items()):
                family.add_metric([str(node)], n)
            yield family


# --- locators: which node serves a request -------------------------------------------------------


def _node_of(order_id: int) -> int:
    return decode_order_id(order_id)[1]


def _int(text: str) -> int | None:
    return int(text) if 0 < len(text) <= 19 and text.isascii() and text.isdigit() else None


async def by_order(request: web.Request, forwarder: Forwarder) -> int | None:
    """The node of the order in the path (a malformed id is answered here, as any node would)."""
    order_id = _int(request.match_info.get("order_id", ""))
    return None if order_id is None else _node_of(order_id)


async def by_return(request: web.Request, forwarder: Forwarder) -> int | None:
    """The node of the order of the return in the path (none such: answered here, 404)."""
    return_id = _int(request.match_info.get("return_id", ""))
    if return_id is None:
        return None
    order_id = await forwarder.store.order_of_return(return_id)
    return None if order_id is None else _node_of(order_id)


async def by_payment_event(request: web.Request, forwarder: Forwarder) -> int | None:
    """The node of the order a provider's event is about (its object's metadata); an event
    that names none of our orders is answered here (verified, then acknowledged or refused)."""
    try:
        _, obj = payments.decode_event(await request.read())
    except DomainError:
        return None
    if isinstance(obj, (PaymentIntent, ProviderRefund)):
        order_id = metadata_int(obj.metadata, "order_id")
        if order_id is not None:
            return _node_of(order_id)
    return None


async def by_carrier_event(request: web.Request, forwarder: Forwarder) -> int | None:
    """The node of the order a carrier's tracking event is about: by its parcel reference, or
    by the return whose parcel it is."""
    try:
        _, scan = logistics.decode_event(await request.read())
    except DomainError:
        return None
    if scan is None:
        return None
    parcel = logistics.parse_parcel_reference(scan.reference)
    if parcel is not None:
        return _node_of(parcel[0])
    return_id = parse_return_reference(scan.reference)
    if return_id is None:
        return None
    order_id = await forwarder.store.order_of_return(return_id)
    return None if order_id is None else _node_of(order_id)


async def by_leader(request: web.Request, forwarder: Forwarder) -> int | None:
    """The leader: it alone hands out webhook endpoints' ids and delivers their events."""
    return await forwarder.leader()


def forwarding(handler: Handler, locate: Locator, forwarder: Forwarder) -> Handler:
    """``handler`` run here when ``locate`` names this node (or any), else forwarded."""

    @functools.wraps(handler)
    async def serve(request: web.Request) -> web.StreamResponse:
        node = await locate(request, forwarder)
        if node is None or node in forwarder.numbers():
            return await handler(request)
        return await forwarder.forward(request, node)

    return serve
