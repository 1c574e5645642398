"""Prometheus metrics (prometheus_client, one registry per app): requests and latency by
route, orders created, stock-outs, commit batch sizes and latencies, open reservations,
fulfilment time (paid to delivered), lightning refunds with their time from pickup scan to
refund, attempts to deliver order events to merchants' webhook endpoints by outcome, and whether the
node is draining before a stop."""

from __future__ import annotations

import collections
import itertools
from bisect import bisect_left
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from pyorder._core import RISK_KINDS, RiskEngine
from pyorder.platform import Platform
from pyorder.server.admission import Admission
from pyorder.server.drain import DrainState
from pyorder.server.replication_metrics import ReplicationStats


class Metrics:
    def __init__(
        self,
        platform: Platform,
        admission: Admission | None = None,
        drain: DrainState | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        if drain is not None:
            draining = Gauge(
                "pyorder_draining",
                "1 while the node drains before it stops (/readyz answers 503)",
                registry=r,
            )
            draining.set_function(lambda: int(drain.draining))
        if admission is not None:
            r.register(AdmissionStats(admission))
        r.register(NodeStats(platform))
        if platform.risk_engine is not None:
            r.register(RiskStats(platform.risk_engine))
        self.replication = ReplicationStats(platform.store)
        r.register(self.replication)
        self.http = HttpStats(
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
        )
        r.register(self.http)
        self.connections = ConnectionStats()
        r.register(self.connections)
        self.orders = OrderCounts()
        r.register(self.orders)
        self.commits = CommitStats()
        r.register(self.commits)
        self.commit_failures = Gauge(
            "pyorder_commit_failures", "Failed commits since start", registry=r
        )
        self.commit_failures.set_function(lambda: platform.intake.stats.failures)
        open_reservations = Gauge(
            "pyorder_open_reservations", "Reservations awaiting payment", registry=r
        )
        open_reservations.set_function(
            lambda: platform.engine.inventory.open_reservations if platform.ready else 0
        )
        platform.intake.stats.observers.append(self.commits.observe)
        self.fulfilment_seconds = Histogram(
            "pyorder_fulfilment_seconds",
            "Time from an order's payment to the delivery of its last parcel",
            buckets=(
                1,
                10,
                60,
                600,
                3600,
                6 * 3600,
                12 * 3600,
                *(d * 86400 for d in (1, 2, 3, 5, 7, 14)),
            ),
            registry=r,
        )
        platform.logistics.subscribe_delivered(
            lambda ms: self.fulfilment_seconds.observe(max(0, ms) / 1000)
        )
        self.lightning_refunds = Counter(
            "pyorder_lightning_refunds",
            "Returns refunded at the pickup scan by the rules",
            registry=r,
        )
        self.scan_to_refund_seconds = Histogram(
            "pyorder_scan_to_refund_seconds",
            "Time from a return's pickup scan (the carrier's time) to its lightning refund being"
            " issued durably",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        platform.returns.subscribe_lightning(self._observe_lightning)
        self.webhook_deliveries = Counter(
            "pyorder_webhook_deliveries",
            "Attempts to deliver an order event to a merchant's endpoint, by outcome: delivered"
            " (2xx), retried (failed, due again after a backoff), failed (the last attempt)",
            ["outcome"],
            registry=r,
        )
        by_outcome = {
            o: self.webhook_deliveries.labels(o) for o in ("delivered", "retried", "failed")
        }
        platform.event_dispatcher.subscribe_attempts(lambda outcome: by_outcome[outcome].inc())

    def _observe_lightning(self, seconds: float) -> None:
        self.lightning_refunds.inc()
        self.scan_to_refund_seconds.observe(seconds)

    async def render(self) -> web.Response:
        """The Prometheus text, with the database's replication read first (at most once a
        second: ``ReplicationStats``)."""
        await self.replication.refresh()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class RiskStats(Collector):
    """Risk control at intake (``docs/risk.md``): decisions by outcome, those decided while
    the model could not be loaded, and the keys its tracker holds per kind."""

    def __init__(self, engine: RiskEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        allowed, reviewed, blocked, failed = self.engine.counts
        family = CounterMetricFamily(
            "pyorder_risk_decisions",
            "Orders assessed by risk control, by outcome (allow, review, block)",
            labels=["outcome"],
        )
        for outcome, n in (("allow", allowed), ("review", reviewed), ("block", blocked)):
            family.add_metric([outcome], n)
        yield family
        yield CounterMetricFamily(
            "pyorder_risk_scoring_failures",
            "Orders decided without a score because the configured model could not be loaded",
            failed,
        )
        keys = GaugeMetricFamily(
            "pyorder_risk_tracked_keys",
            "Keys the velocity tracker holds, by kind (bounded: docs/risk.md)",
            labels=["kind"],
        )
        for kind, n in zip(RISK_KINDS, self.engine.tracked_keys(), strict=True):
            keys.add_metric([kind], n)
        yield keys


class NodeStats(Collector):
    """This node on its store (``docs/scale-out.md``): its order-ID node number and fencing
    epoch, whether it holds its lease and leads, the store's conflict retries; on a cluster
    node, its purchase-limit claims and refusals, and its stock keeper's grants, give-backs,
    take-overs and failures."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[Metric]:
        p = self.platform
        claim = p.current_claim()
        held = claim is not None and claim.held
        yield GaugeMetricFamily(
            "pyorder_node_number", "Order-ID node number", claim.node if claim else -1
        )
        yield GaugeMetricFamily(
            "pyorder_node_epoch", "Fencing epoch of the node's lease", claim.epoch if claim else 0
        )
        yield GaugeMetricFamily(
            "pyorder_node_lease_held", "1 while the node holds its lease", int(held)
        )
        yield GaugeMetricFamily(
            "pyorder_node_leader",
            "1 while the node does the shared background work",
            int(held and claim is not None and claim.leader),
        )
        retries = getattr(p.store, "conflict_retries", None)
        if retries is not None:
            family = CounterMetricFamily(
                "pyorder_commit_conflict_retries",
                "Commits run again after PostgreSQL aborted them for a conflict, by SQLSTATE",
                labels=["sqlstate"],
            )
            for state in ("40001", "40P01"):
                family.add_metric([state], retries.get(state, 0))
            yield family
        limits = p.limit_claims
        if limits is not None:
            c = limits.stats
            yield CounterMetricFamily(
                "pyorder_limit_claims",
                "Purchase-limit claims run across the cluster (one per request of limited SKUs)",
                c.claims,
            )
            yield CounterMetricFamily(
                "pyorder_limit_refusals",
                "Orders refused because the buyer is over a purchase limit across the cluster",
                c.refused,
            )
            yield CounterMetricFamily(
                "pyorder_limit_claims_released",
                "Orders whose limit claims were given up (commit failed, core rebuilt)",
                c.released,
            )
            yield CounterMetricFamily(
                "pyorder_limit_claim_release_failures",
                "Releases of limit claims that failed (the claims lapse after their TTL)",
                c.release_failures,
            )
        keeper = p.stock_keeper
        if keeper is None:
            return
        k = keeper.stats
        yield CounterMetricFamily(
            "pyorder_stock_lease_grants", "Stock lease grants received", k.grants
        )
        yield CounterMetricFamily(
            "pyorder_stock_lease_units_granted", "Units leased from the pool", k.units_granted
        )
        yield CounterMetricFamily(
            "pyorder_stock_lease_units_returned", "Units given back to the pool at stop", k.returned
        )
        yield CounterMetricFamily(
            "pyorder_stock_lease_units_reclaimed",
            "Units of dead nodes' leases taken back to the pool",
            k.reclaimed,
        )
        yield CounterMetricFamily(
            "pyorder_orphan_orders_expired",
            "Unpaid orders of dead nodes expired by this node",
            k.orphans_expired,
        )
        yield CounterMetricFamily(
            "pyorder_nodes_adopted", "Dead nodes' numbers this node adopted", k.adopted
        )
        yield GaugeMetricFamily(
            "pyorder_node_numbers_served",
            "Node numbers whose orders this node serves (its own and adopted ones)",
            len(p.serving),
        )
        yield CounterMetricFamily(
            "pyorder_stock_lease_failures", "Refill or take-over passes that failed", k.failures
        )
        available = 0
        if p.ready:
            inventory = p.engine.inventory
            available = sum(inventory.stock(sku).available for sku in p.engine.skus)
        yield GaugeMetricFamily(
            "pyorder_stock_lease_units_held", "Units this node may still sell", available
        )


class AdmissionStats(Collector):
    """The placing routes' load shedding (``pyorder.server.admission``): requests refused with 503
    (``pyorder_http_shed_total``), requests in flight and the adaptive bound on them."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        a = self.admission
        yield CounterMetricFamily(
            "pyorder_http_shed", "Placing requests refused as overloaded (503)", value=a.shed
        )
        yield GaugeMetricFamily(
            "pyorder_http_in_flight", "Placing requests admitted, not yet answered", a.in_flight
        )
        yield GaugeMetricFamily(
            "pyorder_http_in_flight_limit",
            "Placing requests admitted at most at once, now (adapts to their delay)",
            a.limit,
        )
        yield GaugeMetricFamily(
            "pyorder_http_shed_target_seconds",
            "Mean latency of placing requests past which the bound shrinks (--shed-factor"
            " times their normal latency, once known)",
            a.target,
        )


class OrderCounts(Collector):
    """Orders acknowledged and orders refused as out of stock, as plain integers bumped on the
    request path (``pyorder_orders_created_total``, ``pyorder_stockouts_total``)."""

    def __init__(self) -> None:
        self.created = 0
        self.stockouts = 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "pyorder_orders_created", "Orders acknowledged", value=self.created
        )
        yield CounterMetricFamily(
            "pyorder_stockouts", "Orders refused as out of stock", value=self.stockouts
        )


class Buckets:
    """One histogram as plain numbers, for the hot paths: a count per bucket (the last one is
    +Inf) and the sum of what was observed. prometheus_client's ``Histogram`` takes a lock
    and several calls per observation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket with le >= value
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count at or below it) per bucket, as Prometheus prints them."""
        les = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        return list(zip(les, itertools.accumulate(self.counts), strict=True))


class CommitStats(Collector):
    """Rows and changes per group commit (``pyorder_commit_batch_items``) and the duration of
    each (``pyorder_commit_seconds``); observed by the intake after every commit."""

    def __init__(self) -> None:
        self.items = Buckets((1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000))
        self.seconds = Buckets((0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1))

    def observe(self, items: int, seconds: float) -> None:
        self.items.observe(items)
        self.seconds.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        for name, doc, buckets in (
            ("pyorder_commit_batch_items", "Rows and changes per group commit", self.items),
            ("pyorder_commit_seconds", "Duration of one group commit", self.seconds),
        ):
            yield HistogramMetricFamily(
                name, doc, buckets=buckets.cumulative(), sum_value=buckets.sum
            )


class HttpStats(Collector):
    """Requests by (method, route, status) and their latency by (method, route), counted in
    plain numbers on the request path and made Prometheus families only when scraped:
    ``pyorder_http_requests_total`` and the histogram ``pyorder_http_request_seconds``.
    (prometheus_client's labelled metrics take a lock and several calls per observation,
    ~4 % of the event loop's samples on the single-order path.) Used from the event loop only.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], Buckets] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        hist = self.latency.get(key[:2])
        if hist is None:
            hist = self.latency[key[:2]] = Buckets(self.buckets)
        hist.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "pyorder_http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        for (method, route, status), n in sorted(self.counts.items()):
            requests.add_metric([method, route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            "pyorder_http_request_seconds",
            "HTTP request latency",
            labels=["method", "route"],
        )
        for (method, route), hist in sorted(self.latency.items()):
            latency.add_metric([method, route], hist.cumulative(), hist.sum)
        yield latency


class ConnectionStats(Collector):
    """What happens below the handlers (``pyorder.server.connections``), counted in plain numbers:
    requests the parser refused by error code (``pyorder_http_protocol_errors_total``),
    connections the server closed by reason (``pyorder_http_connections_closed_total``:
    header_timeout, body_timeout, idle, evicted, refused), requests whose client went away
    before the answer (``pyorder_http_client_disconnects_total``), and open connections
    (``pyorder_http_open_connections``)."""

    def __init__(self) -> None:
        self.protocol_errors: collections.Counter[str] = collections.Counter()
        self.closed: collections.Counter[str] = collections.Counter()
        self.disconnects = 0
        self.open_connections: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            "pyorder_http_protocol_errors",
            "Requests refused before reaching a handler (malformed HTTP), by error code",
            labels=["code"],
        )
        for code, n in sorted(self.protocol_errors.items()):
            errors.add_metric([code], n)
        yield errors
        closed = CounterMetricFamily(
            "pyorder_http_connections_closed",
            "Connections closed by the server: header_timeout, body_timeout, idle (keep-alive"
            " timeout), evicted (to make room under the connection cap), refused (cap reached,"
            " every connection busy)",
            labels=["reason"],
        )
        for reason in ("header_timeout", "body_timeout", "idle", "evicted", "refused"):
            closed.add_metric([reason], self.closed[reason])
        yield closed
        yield CounterMetricFamily(
            "pyorder_http_client_disconnects",
            "Requests whose client disconnected before the answer",
            value=self.disconnects,
        )
        yield GaugeMetricFamily(
            "pyorder_http_open_connections",
            "Open client connections",
            value=self.open_connections(),
        )
