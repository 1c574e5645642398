"""Order-ID node numbers leased from PostgreSQL, with a fencing epoch (``docs/scale-out.md``).

A serving process claims a node number (0-255, the ``node`` bits of its order IDs) before it
rebuilds its core and takes orders, and holds it until it stops or dies.

* **Liveness is a session-level advisory lock** on a connection of the lease's own: PostgreSQL
  drops it the moment that session ends, so a killed process (the kernel closes its socket)
  frees its number at once, and a paused one keeps it. Two locks, two-key form:
  ``(MODE_LOCK, 0)``, taken exclusively by a node in solo mode (the default: one node per
  database) and shared by nodes in cluster mode, so neither kind runs beside the other; and
  ``(NODE_LOCK, n)``, exclusive, by the holder of number ``n``.
* **Fencing**: each claim raises ``node_leases.epoch`` under the row's lock; every commit of the
  holder first runs ``FENCE_SQL`` in its transaction (``PostgresStore``), which finds the row
  only while the epoch is the holder's own. A holder whose session was cut and whose number was
  claimed again (its epoch raised) can no longer commit anything; a claim waits for the commits
  in flight under the old epoch (they hold the row's lock) before it raises it.
* **Clock**: IDs carry the minting machine's clock. A claim refuses a machine whose clock is
  further than ``max_clock_skew_ms`` from the database's. ``seen_ms`` (the database's clock) is
  written by every commit and heartbeat of the holder, so an ID it minted carries a time of at
  most ``seen_ms + max_clock_skew_ms``; a claim of a number last seen at ``seen_ms`` waits until
  the database's clock passes ``seen_ms + 2 * max_clock_skew_ms`` (its own clock may lag by the
  skew too) before it hands the number out.

The heartbeat (``watch``) writes ``seen_ms`` every ``heartbeat_s`` and notices a lost session:
the lease is then not ``held`` until it is claimed again, with a new epoch (the platform must
rebuild before it commits again; its fence still names the old epoch, so nothing slips through).
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pyorder.kernel.tasks import cancelled
from pyorder.storage.base import NodeClaim, StorageError, StoreInUseError

log = logging.getLogger(__name__)
T = TypeVar("T")

MODE_LOCK = 0x7079_0001
"""First key of the advisory lock that keeps solo and cluster nodes apart (second key 0)."""
LEADER = 1
"""Second key of the advisory lock (``MODE_LOCK``, 1) the cluster's leader holds: the one node
that does the shared background work read from the store (webhook deliveries, purges)."""
NODE_LOCK = 0x7079_0002
"""First key of the advisory lock on node number ``n`` (second key ``n``)."""
NODES = 256
"""Node numbers an order ID can carry (8 bits, ``pyorder.ids``)."""

KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
"""The lease session's TCP keepalives, on the server's side: a node cut off by the network (or
whose machine died without closing its sockets) loses its session, hence its number and
leases, about 11 s later, instead of after the system's default of hours. A paused process
keeps it: its kernel still answers the probes."""

CONNECT_TIMEOUT_S = 5.0
"""Longest one connection attempt may take, every host of a multi-host DSN included (asyncpg's
``timeout`` covers the whole list; its default is 60 s). A node reconnecting during a database
failover then fails fast and tries again, instead of hanging on a host that does not answer."""

RECLAIM_FIRST_S = 0.1
"""After the lease's session is lost, the first try to claim the number again comes this soon;
each failed try doubles the wait, up to ``LeaseConfig.heartbeat_s``."""

DB_NOW_MS = "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
"""The database's clock in ms since the epoch, floored like ``kernel.clock.now_ms`` (a cast alone
rounds, and a row stamped by it could read as half a millisecond in the future)."""
FENCE_SQL = f"UPDATE node_leases SET seen_ms = {DB_NOW_MS} WHERE node = $1 AND epoch = $2"
"""The first statement of every commit of a lease holder: 0 rows means it is fenced off."""

_THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"
LIVE_NODES_SQL = (
    "SELECT l.objid::bigint FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    f" AND l.objsubid = 2 AND l.classid::bigint = {NODE_LOCK} AND l.database = {_THIS_DATABASE}"
)
"""The node numbers held by live sessions on this database (advisory locks are per database)."""
PEER_URL_SQL = (
    f"SELECT url FROM node_leases WHERE node = $1 AND url <> '' AND node IN ({LIVE_NODES_SQL})"
)
"""Where live node $1 takes forwarded requests (no row: no live node holds the number)."""
LEADER_NODE_SQL = (
    "SELECT n.objid::bigint FROM pg_locks n JOIN pg_locks l ON l.pid = n.pid"
    f" WHERE n.locktype = 'advisory' AND n.granted AND n.objsubid = 2"
    f" AND n.classid::bigint = {NODE_LOCK} AND n.database = {_THIS_DATABASE}"
    " AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    f" AND l.classid::bigint = {MODE_LOCK} AND l.objid::bigint = {LEADER}"
    f" AND l.database = {_THIS_DATABASE}"
)
"""The number of the leader's node: the session holding the leader lock holds its number too
(both are taken on the lease's own connection). No row: no leader right now."""
_LIVE_HOLDERS = (
    "SELECT n.node, n.holder, n.mode, n.seen_ms, " + DB_NOW_MS + " FROM node_leases n"
    f" WHERE n.node IN ({LIVE_NODES_SQL}) ORDER BY n.node"
)


class NodeRefusedError(StoreInUseError):
    """This process may not serve the database now (another node's mode, no free node number,
    a clock too far from the database's); the message says which and what to do."""


class FencedError(StorageError):
    """A commit under an epoch that is no longer the node number's: another process claimed
    the number after this one lost its session. Nothing of the batch was written."""


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    cluster: bool = False
    """Cluster mode (several nodes on one database); solo mode refuses to run beside any other."""
    node: int | None = None
    """The node number to claim; None: 0 in solo mode, the lowest free one in cluster mode (a
    claim again after a lost session tries the number held before first)."""
    max_clock_skew_ms: int = 250
    """Largest distance allowed between this machine's clock and the database's."""
    heartbeat_s: float = 1.0
    """How often the lease writes ``seen_ms`` and checks its session."""
    lock_timeout_ms: int = 5_000
    """How long a claim waits for the commits in flight under the previous epoch."""
    url: str = ""
    """Where this node takes the requests other nodes forward to it (``node_leases.url``;
    ``pyorder.server.forwarding``); empty: none."""


def holder_name() -> str:
    """Who holds a lease, for people reading ``node_leases``: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class NodeLease(NodeClaim):
    """One process's claim of a node number on a PostgreSQL database (see the module doc)."""

    def __init__(self, dsn: str, config: LeaseConfig, holder: str | None = None) -> None:
        super().__init__(node=-1, epoch=0)
        self._dsn = dsn
        self.config = config
        self.holder = holder or holder_name()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._leader = False
        self._lost = asyncio.Event()
        """Set when the lease's session ends (asyncpg's termination listener): wakes the
        heartbeat at once, so that a failover is noticed without waiting for the next beat."""
        self._using = asyncio.Lock()
        """One statement at a time on the lease's session (heartbeat, taking over)."""
        self.claims = 0
        """How many times this lease claimed a number (1 + the re-claims after a lost session)."""
        self.adopted: set[int] = set()
        """Dead nodes' numbers this lease holds too (``adopt``): their orders are its node's."""

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def leader(self) -> bool:
        return self._leader and self.held

    @property
    def numbers(self) -> frozenset[int]:
        return frozenset((self.node, *self.adopted))

    @property
    def backend_pid(self) -> int:
        """The lease session's server process (for operators and tests)."""
        if self._conn is None:
            raise StorageError("the node lease is not held")
        return self._conn.get_server_pid()

    async def acquire(self) -> None:
        """Claim a node number; raises ``NodeRefusedError`` when this process may not serve."""
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=CONNECT_TIMEOUT_S,
                server_settings={"application_name": f"pyorder {self.holder}", **KEEPALIVES},
            )
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ) as e:
            raise StorageError(f"cannot connect to PostgreSQL for the node lease: {e}") from e
        try:
            await self._check_clock(conn)
            await self._lock_mode(conn)
            node = await self._lock_node(conn)
            epoch, wait_ms = await self._raise_epoch(conn, node)
            if wait_ms > 0:  # the number was in use moments ago: let its last IDs' time pass
                await asyncio.sleep(wait_ms / 1000)
        except BaseException:
            conn.terminate()  # no await: this may be a cancellation
            raise
        conn.add_termination_listener(self._session_ended)
        self._conn, self.node, self.epoch = conn, node, epoch
        self.claims += 1
        log.info("node lease: node %d, epoch %d (%s mode)", node, epoch, self._mode)
        if self.claims > 1:
            for notify in self.on_claimed_again:
                notify()
        await self._lead()

    async def _lead(self) -> None:
        """Become the leader if no live node is (a session-level lock: it passes to another
        node the moment the leader's session ends)."""
        conn = self._conn
        if self._leader or conn is None or conn.is_closed():
            return
        async with self._using:
            self._leader = bool(
                await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", MODE_LOCK, LEADER)
            )
        if self._leader:
            log.info("node %d leads the shared background work", self.node)
            for notify in self.on_leader:
                notify()

    def _session_ended(self, conn: "asyncpg.Connection | PoolConnectionProxy") -> None:
        if conn is self._conn:
            self._lost.set()

    def watch(self) -> None:
        """Start the heartbeat (``seen_ms``, session check, claiming again after a loss)."""
        if self._task is None:
            self._task = asyncio.create_task(self._beat(), name="pyorder-node-lease")

    async def release(self) -> None:
        """Stop the heartbeat and end the session: the number is free at once."""
        task, self._task = self._task, None
        await cancelled(task)
        conn, self._conn = self._conn, None
        self._leader = False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    # --- claiming ------------------------------------------------------------------------------

    @property
    def _mode(self) -> str:
        return "cluster" if self.config.cluster else "solo"

    async def _check_clock(self, conn: asyncpg.Connection) -> None:
        before = time.time_ns() / 1e6
        db_ms = float(await conn.fetchval(f"SELECT {DB_NOW_MS}"))
        after = time.time_ns() / 1e6
        # The database read its clock somewhere within the round trip.
        skew = abs(db_ms - (before + after) / 2) - (after - before) / 2
        if skew > self.config.max_clock_skew_ms:
            raise NodeRefusedError(
                f"this machine's clock is {skew:.0f} ms from the database's (at most "
                f"{self.config.max_clock_skew_ms} ms allowed): order IDs carry the time, so "
                "synchronise the clocks (NTP) before serving"
            )

    async def _lock_mode(self, conn: asyncpg.Connection) -> None:
        take = "pg_try_advisory_lock_shared" if self.config.cluster else "pg_try_advisory_lock"
        if await conn.fetchval(f"SELECT {take}($1, 0)", MODE_LOCK):
            return
        others = await self._describe_live(conn)
        if self.config.cluster:
            raise NodeRefusedError(
                f"a pyorder node in solo mode serves this database ({others}): cluster nodes "
                "cannot join it; stop it, then start every node in cluster mode"
            )
        raise NodeRefusedError(
            f"another pyorder node serves this database ({others}). A node in solo mode (the "
            "default) runs alone on its database, since each node sells from its own copy of "
            "the stock: stop the other node first"
        )

    async def _lock_node(self, conn: asyncpg.Connection) -> int:
        wanted = self.config.node
        if wanted is not None:
            if not 0 <= wanted < NODES:
                raise NodeRefusedError(f"node number {wanted} is out of range 0..{NODES - 1}")
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", NODE_LOCK, wanted):
                return wanted
            raise NodeRefusedError(
                f"node number {wanted} is held by a live node ({await self._describe_live(conn)})"
                ": give each node its own number, or none to take a free one"
            )
        if not self.config.cluster:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, 0)", NODE_LOCK):
                return 0
            raise NodeRefusedError("node number 0 is held by a live node")
        # Claiming again (a lost session, a failover): its own number first, so that the
        # nodes of a cluster keep theirs rather than take each other's.
        order = range(NODES) if self.node < 0 else (self.node, *range(NODES))
        for node in order:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", NODE_LOCK, node):
                return node
        raise NodeRefusedError(f"all {NODES} node numbers are held by live nodes")

    async def _raise_epoch(self, conn: asyncpg.Connection, node: int) -> tuple[int, int]:
        """Raise the number's epoch (after the old epoch's commits in flight end); returns the
        new epoch and how long to wait before minting IDs under the number (ms)."""
        skew = self.config.max_clock_skew_ms
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {int(self.config.lock_timeout_ms)}")
                row = await conn.fetchrow(
                    "SELECT epoch, seen_ms FROM node_leases WHERE node = $1 FOR UPDATE", node
                )
                now = int(await conn.fetchval(f"SELECT {DB_NOW_MS}"))
                epoch = 1 if row is None else int(row[0]) + 1
                await conn.execute(
                    "INSERT INTO node_leases (node, epoch, holder, mode, acquired_ms, seen_ms, url)"
                    " VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (node) DO UPDATE SET"
                    " epoch = excluded.epoch, holder = excluded.holder, mode = excluded.mode,"
                    " acquired_ms = excluded.acquired_ms, seen_ms = excluded.seen_ms,"
                    " url = excluded.url",
                    node,
                    epoch,
                    self.holder,
                    self._mode,
                    now,
                    self.config.url,
                )
        except asyncpg.LockNotAvailableError as e:
            raise NodeRefusedError(
                f"node number {node}: a commit of its previous holder is still in flight after "
                f"{self.config.lock_timeout_ms} ms; try again"
            ) from e
        wait = 0 if row is None else int(row[1]) + 2 * skew - now
        return epoch, wait

    async def _describe_live(self, conn: asyncpg.Connection) -> str:
        rows = await conn.fetch(_LIVE_HOLDERS)
        if not rows:
            return "its node number is not recorded yet"
        return "; ".join(
            f"node {r[0]} held by {r[1]} in {r[2]} mode, last seen {(r[4] - r[3]) / 1000:.1f} s ago"
            for r in rows
        )

    # --- heartbeat -----------------------------------------------------------------------------

    async def _beat(self) -> None:
        # Held: a beat every heartbeat_s, or at once when the session ends. Lost: claim again at
        # once, then after RECLAIM_FIRST_S, doubling up to heartbeat_s while it fails (a
        # failover's new primary is often up within a second).
        retry = RECLAIM_FIRST_S
        pause = self.config.heartbeat_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), pause)
            self._lost.clear()
            pause = self.config.heartbeat_s
            conn = self._conn
            if conn is not None and not conn.is_closed():
                try:
                    async with self._using:
                        status = await conn.execute(FENCE_SQL, self.node, self.epoch, timeout=5)
                except Exception:  # any failure: the session is lost (a connection cut by a
                    # dying server can leave asyncpg's protocol half way, and it raises
                    # InternalClientError, a plain Exception: the heartbeat must not die of it)
                    log.warning("node lease: the session of node %d is lost", self.node)
                    await self._drop()
                    pause = retry = RECLAIM_FIRST_S
                else:
                    if status.endswith(" 0"):  # someone raised the epoch: never ours again
                        log.error("node lease: node %d was claimed by another", self.node)
                        await self._drop()
                        pause = retry = RECLAIM_FIRST_S
                    else:
                        try:
                            await self._lead()
                        except Exception:  # the session broke meanwhile: the next beat sees it
                            log.warning("node lease: could not try to lead", exc_info=True)
                continue
            try:
                await self.acquire()
                continue
            except StorageError as e:
                log.warning("node lease: cannot claim a node number again: %s", e)
            except Exception:  # the new session was cut while claiming (a failover): retry;
                # the heartbeat must never die, or the node would never claim a number again
                log.warning("node lease: claiming a node number again failed", exc_info=True)
            pause, retry = retry, min(retry * 2, self.config.heartbeat_s)

    async def take_over(
        self, node: int, work: Callable[[asyncpg.Connection], Awaitable[T]]
    ) -> T | None:
        """Run ``work`` for a dead node's number (None, and nothing done, while it is live):
        hold its lock for the while, raise its epoch first (which waits for its commits in
        flight, and fences off any it might still attempt), in one transaction."""
        raise_epoch = "UPDATE node_leases SET epoch = epoch + 1, holder = $2 WHERE node = $1"
        args = (node, f"taken over by {self.holder}")
        _, result = await self._seize(node, raise_epoch, args, work, keep=False)
        return result

    async def adopt(
        self, node: int, work: Callable[[asyncpg.Connection], Awaitable[T]]
    ) -> T | None:
        """Take a dead node's number over for good, so that this node serves its orders: hold
        its lock on this lease's session from now on, and in one transaction raise its epoch
        (which waits for its commits in flight, and fences off any it might still attempt),
        record this node as its holder, with this node's URL (its orders' requests are
        forwarded here), and run ``work``. None, and nothing done, while it is live. The
        number is free again when this lease's session ends (with this node's own)."""
        raise_epoch = (
            "UPDATE node_leases SET epoch = epoch + 1, holder = $2, url = $3,"
            f" mode = 'cluster', seen_ms = {DB_NOW_MS} WHERE node = $1"
        )
        args = (node, f"adopted by node {self.node} ({self.holder})", self.config.url)
        taken, result = await self._seize(node, raise_epoch, args, work, keep=True)
        if taken:
            self.adopted.add(node)
            log.info("node %d adopted dead node %d's orders", self.node, node)
        return result

    async def _seize(
        self,
        node: int,
        raise_epoch: str,
        args: tuple[object, ...],
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        keep: bool,
    ) -> tuple[bool, T | None]:
        """Lock a dead node's number on this lease's session, then in one transaction run
        ``raise_epoch`` (with ``args``; it waits for the number's commits in flight) and
        ``work``. The lock is let go afterwards, or, with ``keep``, only if this failed.
        Returns whether the number was taken (not while it is live) and what ``work`` gave."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False, None
        async with self._using:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", NODE_LOCK, node):
                return False, None
            failed = True
            try:
                async with conn.transaction():
                    await conn.execute(
                        f"SET LOCAL lock_timeout = {int(self.config.lock_timeout_ms)}"
                    )
                    await conn.execute(raise_epoch, *args)
                    result = await work(conn)
                failed = False
            finally:
                # A cut session has dropped the lock already.
                if (failed or not keep) and not conn.is_closed():
                    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
                        await conn.execute("SELECT pg_advisory_unlock($1, $2)", NODE_LOCK, node)
        return True, result

    async def _drop(self) -> None:
        self._leader = False
        self.adopted.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
