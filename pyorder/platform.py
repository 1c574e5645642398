"""Wiring: the store, the group-commit intake, the in-memory engine and the services.

``Platform`` is the one place that builds them (the bootstrap); the HTTP server and tests use
it, passing a different ``Config`` where they need to. Each service's constructor names what it
uses; the engine is handed out as an accessor (``Platform.current_engine``), since a rebuild
replaces it. Where two capabilities call each other both ways, one side takes a small protocol
or a callback of its own and is wired here: orders (which payments, logistics and returns read)
reach logistics and refunds through the protocols of ``Orders.connect``; payments tell
logistics of a paid order through ``on_paid``; logistics hands the tracking of return parcels
to returns through ``Logistics.route_returns``.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pyorder.catalog.service import Catalog
from pyorder.cluster.catalogue import CatalogueSync
from pyorder.cluster.endpoints import EndpointMirror
from pyorder.cluster.limits import LimitClaims
from pyorder.cluster.risk import RiskMirror
from pyorder.cluster.stock import StockKeeper, StockLeaseConfig, node_view
from pyorder.engine import Engine
from pyorder.events.dispatcher import EventDispatcher
from pyorder.events.endpoints import Endpoints
from pyorder.events.model import WebhooksConfig
from pyorder.events.publisher import Events
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.tasks import cancelled
from pyorder.logistics.carriers import LogisticsConfig
from pyorder.logistics.dispatcher import ShipmentDispatcher
from pyorder.logistics.service import Logistics
from pyorder.marketplace import Views
from pyorder.orders.service import Orders
from pyorder.payments.dispatcher import Dispatcher
from pyorder.payments.providers import PaymentsConfig, Router
from pyorder.payments.service import Payments
from pyorder.returns.config import ReturnsConfig
from pyorder.returns.dispatcher import ReturnDispatcher
from pyorder.returns.service import Returns
from pyorder.risk import config_file
from pyorder.risk.config_file import RiskFile
from pyorder.risk.intake import Clients, RiskSettings, load_engine, set_policy
from pyorder.risk.management import RiskControl
from pyorder.risk.payments import RiskAtPayment
from pyorder.risk.reports import FraudReports
from pyorder.risk.reviews import Reviews
from pyorder.risk.rules import RuleError
from pyorder.risk.storage import RISK
from pyorder.storage.base import NodeClaim, StorageError, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = field(default_factory=lambda: Path("data"))
    database: str | None = None
    """``postgresql://...`` for PostgreSQL; None for the embedded SQLite file in data_dir."""
    commit_window_ms: float = 0.0
    """Extra wait before a commit, for more requests to join it. 0: none; a batch is then
    what arrived while the previous commit ran (which is the window under load)."""
    payment_timeout_ms: int = 15 * 60 * 1000
    node: int | None = None
    """Order-ID node number of this process (0-255); two live processes never share one. None:
    0 on SQLite and in solo mode on PostgreSQL, a free one leased in cluster mode."""
    cluster: bool = False
    """Several nodes on one PostgreSQL (``docs/scale-out.md``). Off (solo mode), a node refuses
    to start while another serves its database, and the others refuse it."""
    stock_leases: StockLeaseConfig = field(default_factory=StockLeaseConfig)
    """How a cluster node leases stock (refill buffer, idle give-back, ``pyorder.cluster.stock``)."""
    peer_url: str = ""
    """Where this node takes the requests other cluster nodes forward to it (an order's
    requests are served by its node, ``pyorder.server.forwarding``); empty: none."""
    sweep_interval_s: float = 0.1
    """How often unpaid orders past their deadline are expired."""
    idempotency_retention_ms: int = 24 * 3600 * 1000
    """Stored first responses to Idempotency-Keys are kept this long."""
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    """Payment providers, timeouts, circuit breakers and reconciliation."""
    logistics: LogisticsConfig = field(default_factory=LogisticsConfig)
    """Carriers, their timeouts, and whether paid orders ship on their own."""
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    """How order events are sent to merchants' endpoints: timeout, retries and backoff."""
    returns: ReturnsConfig = field(default_factory=ReturnsConfig)
    """Return windows, excluded categories, and the lightning-refund rules."""
    risk: RiskSettings = field(default_factory=RiskSettings)
    """Risk control at intake (off unless ``enabled``): the model, the failure policy, the
    review hold, trusted proxies and the IP-region table."""
    risk_config: RiskFile | None = None
    """Platform risk rules, lists and thresholds applied at start (``pyorder.risk.config_file``,
    ``--risk-config``); None: only what is stored."""


def open_store(config: Config) -> Store:
    """The store the config names: PostgreSQL for a ``postgresql://`` URL, else SQLite."""
    if config.database and config.database.startswith(("postgresql://", "postgres://")):
        from pyorder.storage.postgres import PostgresStore

        return PostgresStore(config.database)
    from pyorder.storage.sqlite import SqliteStore

    path = Path(config.database) if config.database else config.data_dir / "pyorder.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path)


class Platform:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store if store is not None else open_store(config)
        self.intake = Intake(
            self.store, window_s=config.commit_window_ms / 1000, on_failure=self.rebuild
        )
        engine = self.current_engine
        self.catalog = Catalog(engine, self.intake, self.store, cluster=config.cluster)
        self.views = Views(config.data_dir)
        """What each caller may see of an order (``pyorder.marketplace``)."""
        self.webhooks = Endpoints(self.intake, self.store)
        self.events = Events(self.webhooks, engine, self.intake, self.store)
        self.intake.prepare = self.events.resolve_ended
        self.orders = Orders(engine, self.intake, self.store, self.events)
        self.logistics = Logistics(
            config.logistics, engine, self.orders, self.events, self.intake, self.store
        )
        self.payments = Payments(
            Router(config.payments),
            self.orders,
            self.events,
            self.intake,
            self.store,
            on_paid=self.logistics.on_paid,
        )
        self.orders.connect(shipping=self.logistics, refunds=self.payments.refunds)
        self.returns = Returns(
            config.returns,
            engine,
            self.orders,
            self.payments,
            self.logistics,
            self.intake,
            self.store,
        )
        self.logistics.route_returns(self.returns.observe_tracking)
        self.risk = RiskControl(self.intake, self.store)
        """Risk rules, lists and thresholds, and the live policy (``risk.policy``)."""
        self.risk_engine = load_engine(config.risk) if config.risk.enabled else None
        """Risk control at intake (``pyorder.risk.intake``): the core's engine every order is
        assessed with, kept across rebuilds; None when risk control is off."""
        self.clients = Clients.of(config.risk) if config.risk.enabled else None
        """Reads a request's client (IP, its region, agent class) for risk control."""
        if (risk_engine := self.risk_engine) is not None:
            set_policy(risk_engine, self.risk.policy)
            self.risk.on_swap.append(lambda policy: set_policy(risk_engine, policy))
            # At payment: 3-D Secure when the order's decision asked, authorisations counted.
            self.payments.risk = RiskAtPayment(risk_engine, self.store)
        self.reviews = Reviews(self.store)
        """The risk decisions of orders and the open review queue, as committed."""
        self.fraud = FraudReports(self.intake, self.store)
        """Fraud reports of orders (chargebacks, merchants' findings): training labels."""
        durable = self.intake.durable
        self.dispatcher = Dispatcher(self.payments, durable)
        self.shipping = ShipmentDispatcher(self.logistics, self.store, durable)
        self.return_shipping = ReturnDispatcher(self.returns, config.logistics, self.store, durable)
        self.event_dispatcher = EventDispatcher(
            self.webhooks,
            self.events,
            config.webhooks,
            self.views,
            self.intake,
            self.store,
            active=self._leads,
        )
        self._engine: Engine | None = None
        self._claim: NodeClaim | None = None
        self.catalogue_sync = (
            CatalogueSync(self.store, engine, self.intake, lambda: self.ready)
            if config.cluster
            else None
        )
        """Mirrors the store's catalogue in this node's core (cluster mode only)."""
        self.catalog.sync = self.catalogue_sync
        self.endpoint_mirror = (
            EndpointMirror(self.store, self.webhooks, self._leads, lambda: self.ready)
            if config.cluster
            else None
        )
        """Keeps this node's copy of the webhook endpoints current (cluster mode only)."""
        self.risk_mirror = (
            RiskMirror(self.store, self.risk, self._leads, lambda: self.ready)
            if config.cluster
            else None
        )
        """Keeps this node's risk rules and lists current (cluster mode only)."""
        self.stock_keeper = (
            StockKeeper(
                self.store,
                lambda: self.claim,
                engine,
                lambda: self.ready,
                config.stock_leases,
                keys=lambda: self.catalogue_sync.stock_keys if self.catalogue_sync else set(),
            )
            if config.cluster
            else None
        )
        """Refills this node's stock leases (cluster mode only, ``pyorder.cluster.stock``)."""
        self.limit_claims = (
            LimitClaims(self.store, lambda: self.claim, self.intake) if config.cluster else None
        )
        """Claims purchase limits across the cluster (cluster mode only,
        ``pyorder.cluster.limits``)."""
        if self.limit_claims is not None:
            self.orders.claim_limits(self.limit_claims)
        self._sweeper: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._reload_wanted = False
        self._rebuilt_under: tuple[int, int] | None = None
        """The claim's (node, epoch) the engine was last rebuilt under: ready only while it is
        the claim's own (a number claimed again must rebuild before it commits)."""
        self.serving: frozenset[int] = frozenset()
        """The node numbers whose orders this node holds, as of its last rebuild: its own and
        those of the dead nodes it adopted (``NodeClaim.numbers``)."""

    @property
    def engine(self) -> Engine:
        return self.current_engine()

    def current_engine(self) -> Engine:
        """The engine as of now (each rebuild makes a new one); the services' accessor."""
        if self._engine is None:
            raise RuntimeError("the platform has not started")
        return self._engine

    @property
    def ready(self) -> bool:
        return (
            self._engine is not None
            and self.intake.available
            and self._claim is not None
            and self._claim.held
            and self._rebuilt_under == (self._claim.node, self._claim.epoch)
        )

    async def _apply_risk_config(self) -> None:
        """The risk configuration file's rules, lists and thresholds made the stored ones (on
        the node that leads, in a cluster), durable before the node serves; a file the stored
        configuration cannot take (the limits) stops the start."""
        if self.config.risk_config is None:
            return
        if not self._leads():
            log.info("the risk configuration file is applied by the node that leads")
            return
        if self._stage_risk_config(self.config.risk_config):
            await self.intake.durable()

    def _stage_risk_config(self, config: RiskFile) -> int:
        """Stage the risk configuration file's changes (``config_file.apply``); how many."""
        changes = config_file.apply(self.risk, config)
        log.info("risk configuration file applied: %d changes", changes)
        return changes

    def _lead_risk_config(self) -> None:
        """This node became the leader (a rolling restart, a failover): the file applied again,
        committed with the next batch; one the stored configuration cannot take is logged."""
        if self.config.risk_config is None or not self.ready:
            return
        try:
            self._stage_risk_config(self.config.risk_config)
        except RuleError as e:
            log.error("the risk configuration file is not applied: %s", e)

    def _leads(self) -> bool:
        """Whether this node does the shared background work (``NodeClaim.leader``)."""
        return self._claim is not None and self._claim.leader

    def current_claim(self) -> NodeClaim | None:
        """The node's claim, or None before start and after stop (for metrics)."""
        return self._claim

    @property
    def claim(self) -> NodeClaim:
        """This process's order-ID node number and its lease (``Store.claim_node``)."""
        if self._claim is None:
            raise RuntimeError("the platform has not started")
        return self._claim

    async def start(self) -> None:
        await self.store.open()
        try:
            self._claim = await self.store.claim_node(
                node=self.config.node, cluster=self.config.cluster, url=self.config.peer_url
            )
            await self.rebuild()
        except BaseException:
            await self._let_go()
            raise
        self._claim.on_leader.append(self.event_dispatcher.resume)
        self._claim.on_leader.append(self._lead_risk_config)
        self._claim.on_claimed_again.append(self._reload)
        if self.stock_keeper is not None:
            self.stock_keeper.on_orphans_expired.append(self.event_dispatcher.resume)
            self.stock_keeper.on_adopted.append(self._reload)
        if self.endpoint_mirror is not None:  # the other nodes' events, within a second
            self.endpoint_mirror.on_pass.append(self.event_dispatcher.resume)
        self._claim.watch()
        if self.catalogue_sync is not None:
            self.catalogue_sync.start()
        if self.stock_keeper is not None:
            self.stock_keeper.start()
        if self.endpoint_mirror is not None:
            self.endpoint_mirror.start()
        if self.risk_mirror is not None:
            self.risk_mirror.start()
        self.intake.start()
        await self._apply_risk_config()
        await self.dispatcher.start()
        await self.shipping.start()
        await self.event_dispatcher.start()
        await self.return_shipping.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="pyorder-expiry")

    def _reload(self) -> None:
        """Rebuild (``Intake.reload``): to load adopted dead nodes' orders, or under the number
        claimed again after a lost session."""
        self._reload_wanted = True
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self._reload_all(), name="pyorder-reload")

    async def _reload_all(self) -> None:
        """Rebuild until no reload was asked for meanwhile (an adoption, a claim again)."""
        while self._reload_wanted:
            self._reload_wanted = False
            await self.intake.reload()

    async def stop(self) -> None:
        """Stop expiring and calling providers and carriers, flush and commit what is staged,
        close the store."""
        await cancelled(self._reloading)
        if self.stock_keeper is not None:
            await self.stock_keeper.stop()
        if self.catalogue_sync is not None:
            await self.catalogue_sync.stop()
        if self.endpoint_mirror is not None:
            await self.endpoint_mirror.stop()
        if self.risk_mirror is not None:
            await self.risk_mirror.stop()
        await self.dispatcher.stop()
        await self.shipping.stop()
        await self.event_dispatcher.stop()
        await self.return_shipping.stop()
        self.returns.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.intake.close()
        if self.limit_claims is not None:
            await self.limit_claims.stop()
        if self.stock_keeper is not None and self._claim is not None and self._claim.held:
            try:  # after the last commit: the unsold units go back to the pool
                await self.stock_keeper.give_back()
            except Exception:  # taken back by the others once this node is gone
                log.exception("could not give this node's stock leases back")
        await self._let_go()

    async def _let_go(self) -> None:
        """Give up the node number, then close the store."""
        claim, self._claim = self._claim, None
        if claim is not None:
            await claim.release()
        await self.store.close()

    async def rebuild(self) -> None:
        """Rebuild the in-memory engine from exactly what the store holds, under the node
        number and epoch held now (a lost lease refuses: the intake retries until it is
        claimed again)."""
        claim = self.claim
        if not claim.held:
            raise StorageError("this node has lost its node lease; claiming one again")
        self.store.fence = (claim.node, claim.epoch) if claim.epoch else None
        self.store.lease_node = claim.node if self.config.cluster else None
        serving = claim.numbers
        snapshot = await self.store.load()
        if self.config.cluster:  # this node's share: its leases, its own pending orders
            snapshot = node_view(snapshot, claim.node, serving)
        endpoints = await self.store.webhook_endpoints()
        # No await from here on: what is staged on the new core must not be dropped by the
        # intake's recovery (it clears the batch once this returns).
        self._engine = Engine.rebuild(
            snapshot, node=claim.node, payment_timeout_ms=self.config.payment_timeout_ms
        )
        if self.risk_engine is not None:
            self._engine.book.set_risk(self.risk_engine)
            self._engine.book.review_hold_ms = self.config.risk.review_hold_ms
        self.serving = serving
        self._rebuilt_under = (claim.node, claim.epoch)
        self.payments.load(snapshot)
        self.logistics.load(snapshot)
        self.webhooks.load(endpoints)
        self.risk.load(snapshot.part(RISK))
        self.returns.load(snapshot, claim.node if self.config.cluster else None)
        self.orders.forget_cancels()
        self.dispatcher.resume()
        self.shipping.resume()
        self.event_dispatcher.resume()
        self.return_shipping.resume()
        log.info(
            "rebuilt from the store: %d SKUs, %d pending orders",
            len(snapshot.skus),
            len(snapshot.pending_orders),
        )

    async def _sweep(self) -> None:
        """Expire unpaid orders past their deadline; now and then purge old idempotency keys."""
        next_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            if not self.ready:
                continue
            try:
                if self.orders.expire_due():
                    await self.intake.durable()
                if loop.time() >= next_purge and self._leads():
                    next_purge = loop.time() + 60
                    cutoff = now_ms() - self.config.idempotency_retention_ms
                    await self.store.purge_idempotency(cutoff)
            except Exception:  # a failed commit is handled by the intake; keep sweeping
                log.exception("expiry sweep failed")
