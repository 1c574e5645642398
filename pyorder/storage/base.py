"""The storage interface: one durable transaction per write batch, and reads.

Backends: ``pyorder.storage.sqlite`` (embedded default) and ``pyorder.storage.postgres``.
Both apply the same versioned migrations on open and behave the same; the test suite runs every
storage test against both.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.events.model import Delivery, WebhookEndpoint
from pyorder.logistics.model import DeliveryWindow, Fulfilment, TrackingEvent, WindowBooking
from pyorder.model import IdempotencyRecord, Snapshot, WriteBatch
from pyorder.orders.model import Order
from pyorder.returns.model import Return
from pyorder.risk.records import AuditEntry, Decision, FraudReport, Label, RiskState
from pyorder.storage.replication import Standby


class StorageError(Exception):
    """The store failed (I/O, constraint, lost connection). The batch did not commit, except
    when the connection was lost during COMMIT: then the outcome is unknown, and the caller
    must reload (the intake rebuilds the core from the store after any failure)."""


class StockBelowCommitted(StorageError):
    """A stock change that would leave fewer units on hand than are leased, reserved and sold."""


class StoreInUseError(StorageError):
    """The database is already served by another process (or another store of this one) and
    this store may not serve it beside it: refused at ``open``, nothing written. The message
    names the holder."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The store's catalogue, as cluster nodes mirror it (``pyorder.cluster.catalogue``)."""

    warehouses: list[Warehouse]
    regions: dict[str, list[int]]
    skus: list[Sku]
    stock_keys: list[tuple[int, int]]
    """(sku, warehouse) of every stock row."""


class NodeClaim:
    """The order-ID node number a serving process uses, and whether it still holds it.

    This base is the claim of a single-process store (SQLite: its file lock keeps a second
    process out), held from start to stop; PostgreSQL leases the number from the database
    (``pyorder.storage.node_lease.NodeLease``) and can lose it."""

    def __init__(self, node: int, epoch: int = 0) -> None:
        self.node = node
        self.epoch = epoch
        """Fencing epoch of the claim (0: none, a store with one writer)."""
        self.on_leader: list[Callable[[], None]] = []
        """Called when this node becomes the leader (the one node that does the shared
        background work read from the store: webhook deliveries, purges)."""
        self.on_claimed_again: list[Callable[[], None]] = []
        """Called when the number was claimed again after a lost session: a new epoch, maybe
        a new number, so the process must rebuild before it commits again."""

    @property
    def held(self) -> bool:
        return True

    @property
    def numbers(self) -> frozenset[int]:
        """The node numbers whose orders this process serves: its own, and those of dead
        cluster nodes it adopted (``NodeLease.adopt``)."""
        return frozenset((self.node,))

    @property
    def leader(self) -> bool:
        """Whether this node does the shared background work (a node alone always does)."""
        return True

    def watch(self) -> None:
        """Start watching the claim (a lease's heartbeat); nothing to watch here."""

    async def release(self) -> None:
        """Give the number up (at stop)."""


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """What claiming an Idempotency-Key in cluster mode found (``Store.claim_idempotency``)."""

    claimed: bool
    """This node now holds the key and must run the request (and store its response)."""
    stored: IdempotencyRecord | None
    """The key's stored response, if any (when ``claimed``, one past retention, to purge)."""


class Store(ABC):
    """A durable store. Writes come through ``commit`` (and ``purge_idempotency``), from one
    writer at a time."""

    pipeline_depth: int = 1
    """How many commits may be in flight at once. Above 1, the store writes them in the order
    they were handed over and, once one fails, writes none handed over after it until
    ``resume()``: the database always holds a prefix of the batches."""

    replies_can_be_lost: bool = True
    """Whether a commit's outcome can be unknown to the caller (a connection lost during
    COMMIT): the intake then writes a token with each batch to ask ``committed`` later."""

    fence: tuple[int, int] | None = None
    """(node, epoch) every commit checks first, when the store is shared by several processes
    (PostgreSQL, ``node_lease.FENCE_SQL``): set by the platform at each rebuild, from its
    ``NodeClaim``; a commit under a stale epoch fails and writes nothing."""

    lease_node: int | None = None
    """The cluster node whose stock lease the commits move units in and out of (PostgreSQL,
    ``stock_leases``); None for a node alone on its store. Set by the platform at rebuild."""

    async def claim_node(self, *, node: int | None, cluster: bool, url: str = "") -> NodeClaim:
        """Claim the order-ID node number this process will use (``node``, or one the store
        picks), recording ``url``, where it takes the requests other nodes forward. A
        single-process store has nothing to share: it holds ``node`` (0 by default) and
        refuses cluster mode."""
        if cluster:
            raise StorageError(
                f"{type(self).__name__} is single-process: several nodes need PostgreSQL"
            )
        return NodeClaim(0 if node is None else node)

    async def grant_stock(
        self, wants: list[tuple[int, int, int]], nodes: int
    ) -> list[tuple[int, int, int]]:
        """Lease (sku, warehouse, units) to ``lease_node`` from the pool, at most an even share
        among ``nodes`` near sell-out; returns what was granted. Cluster stores only."""
        raise StorageError(f"{type(self).__name__} has no stock leases (single-process)")

    async def return_stock(self, rows: list[tuple[int, int, int]]) -> None:
        """Return (sku, warehouse, units) of ``lease_node``'s lease to the pool."""
        raise StorageError(f"{type(self).__name__} has no stock leases (single-process)")

    async def give_back_stock(self) -> list[tuple[int, int, int]]:
        """Return every unit ``lease_node`` holds to the pool (at a graceful stop)."""
        raise StorageError(f"{type(self).__name__} has no stock leases (single-process)")

    async def reclaim_stock(self, claim: NodeClaim) -> list[tuple[int, int, int]]:
        """Take the units of dead nodes' leases back to the pool, through ``claim`` (the
        caller's node lease); returns what came back."""
        raise StorageError(f"{type(self).__name__} has no stock leases (single-process)")

    async def adopt_dead(self, claim: NodeClaim, after_ms: int) -> dict[int, int]:
        """Adopt, through ``claim``, the numbers of the nodes dead (no live holder, silent) for
        at least ``after_ms``: their orders become ``claim``'s to serve, the units of their
        stock leases go back to the pool. Returns each number adopted with those units."""
        raise StorageError(f"{type(self).__name__} has no other nodes (single-process)")

    async def expire_orphans(self, claim: NodeClaim) -> int:
        """Expire dead nodes' unpaid orders past their deadline; returns how many."""
        raise StorageError(f"{type(self).__name__} has no stock leases (single-process)")

    async def load_catalogue(self) -> Catalogue:
        """Warehouses, regions, SKUs and the keys of the stock rows (cluster nodes)."""
        raise StorageError(f"{type(self).__name__} is single-process: no catalogue to mirror")

    def catalogue_lock(self) -> AbstractAsyncContextManager[None]:
        """Held while a cluster node changes the catalogue: one change at a time, cluster-wide."""
        raise StorageError(f"{type(self).__name__} is single-process: no catalogue lock")

    async def adjust_pool(self, sku: int, warehouse: int, delta: int) -> StockRow:
        """Add ``delta`` units on hand to the pool of (sku, warehouse), a row made if needed;
        refused (``StockBelowCommitted``) below what is leased, reserved and sold. Returns the
        row."""
        raise StorageError(f"{type(self).__name__} has no stock pool (single-process)")

    async def live_nodes(self) -> int:
        """How many nodes serve the store now."""
        return 1

    async def peer_url(self, node: int) -> str | None:
        """Where live node ``node`` takes forwarded requests; None when no live node holds
        that number (or it takes none). Cluster stores only."""
        raise StorageError(f"{type(self).__name__} is single-process: no other nodes")

    async def order_of_return(self, return_id: int) -> int | None:
        """The order a return is of, or None when there is no such return (cluster stores: a
        node finds where a return's requests are served)."""
        raise StorageError(f"{type(self).__name__} is single-process: no other nodes")

    async def leader_node(self) -> int | None:
        """The number of the node that leads the shared background work now, if any."""
        raise StorageError(f"{type(self).__name__} is single-process: no other nodes")

    async def standbys(self) -> list[Standby]:
        """The database's streaming standbys and their lag (``storage.replication``); none
        for a store without replication."""
        return []

    def resume(self) -> None:  # noqa: B027 - an optional hook: stores of depth 1 need none
        """Write again after a failed commit (see ``pipeline_depth``)."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations (versioned, in order, each once)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def commit(self, batch: WriteBatch) -> None:
        """Write the whole batch in one transaction, durably (fsync'd) before returning.

        Status changes apply only where the order is still in ``from_status``. Stock deltas are
        one UPDATE per (sku, warehouse). Raises StorageError and writes nothing on failure.
        """

    @abstractmethod
    async def committed(self, token: int) -> bool:
        """Whether the batch written with ``token`` committed (for a commit whose reply was lost)."""

    @abstractmethod
    async def load(self) -> Snapshot:
        """Everything needed to rebuild the in-memory core after a start or crash."""

    @abstractmethod
    async def get_order(self, order_id: int) -> Order | None: ...

    @abstractmethod
    async def get_orders(self, order_ids: list[int]) -> dict[int, Order]:
        """The orders of ``order_ids`` that exist, by id, read in one query."""

    @abstractmethod
    async def list_orders(
        self,
        *,
        buyer: str | None = None,
        merchant: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Order]:
        """Orders newest first (by id), of a buyer, or containing a merchant's SKUs, or all."""

    @abstractmethod
    async def get_sku(self, sku_id: int) -> Sku | None: ...

    @abstractmethod
    async def list_skus(
        self, *, merchant: str | None = None, after_id: int = -1, limit: int = 50
    ) -> list[Sku]: ...

    @abstractmethod
    async def get_stock(self, sku_id: int) -> list[StockRow]: ...

    async def get_stocks(self, sku_ids: list[int]) -> dict[int, list[StockRow]]:
        """The stock rows of each SKU of ``sku_ids`` that has some, by warehouse."""
        found = {sku: await self.get_stock(sku) for sku in sku_ids}
        return {sku: rows for sku, rows in found.items() if rows}

    @abstractmethod
    async def get_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None: ...

    async def claim_idempotency(
        self, principal: str, key: str, node: int, epoch: int, fresh_after_ms: int
    ) -> KeyClaim:
        """Cluster mode: claim the key for this node (number and epoch) unless another live
        node holds it, and read its stored response (one kept if created at or after
        ``fresh_after_ms``), in one round trip (``pyorder.storage.key_claims``). A
        single-process store has no other node to keep out and offers no cluster mode."""
        raise StorageError(f"{type(self).__name__} is single-process: it claims no keys")

    async def release_idempotency(self, principal: str, key: str, node: int, epoch: int) -> None:
        """Give up this node's claim of a key whose request failed (nothing was written)."""
        raise StorageError(f"{type(self).__name__} is single-process: it claims no keys")

    async def claim_limits(
        self,
        buyer: str,
        orders: list[tuple[int, dict[int, int]]],
        node: int,
        epoch: int,
        in_flight: list[int],
    ) -> dict[int, int]:
        """Cluster mode: claim the units of limited SKUs of ``orders`` ((order id, {sku: units})
        in placing order) for ``buyer`` against what the buyer holds on every node
        (``pyorder.storage.limit_claims``); ``in_flight`` are this node's orders whose claims are
        alive. Returns the refused orders (order id -> the SKU over its limit); the others are
        claimed."""
        raise StorageError(f"{type(self).__name__} is single-process: it claims no limits")

    async def release_limits(self, order_ids: list[int], node: int, epoch: int) -> None:
        """Give up the limit claims of orders refused or not committed (node's, epoch's)."""
        raise StorageError(f"{type(self).__name__} is single-process: it claims no limits")

    async def book_window(
        self, fulfilment: Fulfilment, window_id: int, now_ms: int
    ) -> WindowBooking:
        """Cluster mode: book delivery window ``window_id`` for the order of ``fulfilment``
        (the node's row, for an order the store has none of yet) in one transaction of this
        node's, giving back the window it held (``pyorder.storage.window_bookings``); windows
        that ended by ``now_ms`` are refused."""
        raise StorageError(f"{type(self).__name__} is single-process: it counts windows itself")

    async def delivery_windows(self, ending_after_ms: int) -> list[DeliveryWindow]:
        """Cluster mode: the delivery windows ending after ``ending_after_ms``, as stored."""
        raise StorageError(f"{type(self).__name__} is single-process: it counts windows itself")

    async def webhook_event_seen(self, provider: str, event_id: str) -> bool:
        """Whether the provider event ``event_id`` was already applied (and stored)."""
        raise NotImplementedError

    async def tracking_events(self, order_id: int) -> list[TrackingEvent]:
        """The tracking events received for the order's parcels, by parcel and sequence."""
        raise NotImplementedError

    async def webhook_endpoints(self) -> list[WebhookEndpoint]:
        """Every webhook endpoint ever registered (deleted ones disabled), by id."""
        raise NotImplementedError

    async def pending_deliveries(self, endpoint_id: int, limit: int) -> list[Delivery]:
        """The endpoint's first ``limit`` events not delivered yet (``pending``), by event id:
        the order they are delivered in."""
        raise NotImplementedError

    async def deliveries(
        self, endpoint_id: int, before_id: int | None, limit: int
    ) -> list[Delivery]:
        """The endpoint's events in every state, newest first, with an id below ``before_id``."""
        raise NotImplementedError

    async def risk_state(self) -> RiskState:
        """The risk rules (deleted ones too), list entries and thresholds, as committed, read
        in one transaction (``pyorder.risk.storage``)."""
        raise NotImplementedError

    async def risk_version(self) -> int:
        """The version of the risk configuration, raised by every change of it."""
        raise NotImplementedError

    async def risk_audit(self, owner: str, before_id: int | None, limit: int) -> list[AuditEntry]:
        """The risk audit log, newest first, with an id below ``before_id``, of ``owner``
        ('': every owner's)."""
        raise NotImplementedError

    async def risk_decision(self, order_id: int) -> Decision | None:
        """The risk decision of order ``order_id`` (or of a blocked attempt given that id),
        with its review, as committed (``pyorder.risk.decisions``)."""
        raise NotImplementedError

    async def open_reviews(
        self, merchant: str, before_id: int | None, limit: int
    ) -> list[Decision]:
        """The decisions awaiting a reviewer of orders still in review, newest first, with an
        id below ``before_id``, of ``merchant`` ('': every merchant's)."""
        raise NotImplementedError

    async def review_labels(self, after_id: int, limit: int) -> list[Label]:
        """The reviewed decisions by id, after ``after_id``, as labels: 1 for a rejected order
        (or an approved one reported as fraud since), 0 for an approved one (expired reviews have none), with the features each was decided
        on. What risk control learns from (docs/risk.md, "Review queue")."""
        raise NotImplementedError

    async def fraud_report(self, order_id: int) -> FraudReport | None:
        """The fraud report of order ``order_id``, as committed (``pyorder.risk.fraud``)."""
        raise NotImplementedError

    async def list_returns(
        self, *, buyer: str, merchant: str, status: str, after: int, limit: int
    ) -> list[Return]:
        """Returns by id after ``after``, at most ``limit``: of ``buyer``, of ``merchant``, in
        ``status`` (each '' for any)."""
        raise NotImplementedError

    async def delivered_orders(self, buyer: str) -> int:
        """How many of the buyer's paid orders had every parcel delivered."""
        raise NotImplementedError

    @abstractmethod
    async def purge_idempotency(self, older_than_ms: int) -> int:
        """Delete stored responses (and batch commit tokens) created before ``older_than_ms``;
        returns how many responses."""
