"""The stock-lease protocol against a model, on a real PostgreSQL (issue 13, ``docs/scale-out.md``).

Several cluster "processes" (each a ``PostgresStore`` with its own ``NodeLease``, fenced by its
number and epoch) share one database. Steps drawn from a seeded ``random.Random``: grants,
commits that sell from a lease, cancel back to it and pay, a commit that asks for more than
the lease holds, a kill (the lease session cut from the server side: the process goes on as a
zombie), a reclaim of dead nodes' leases, a graceful give-back and stop, a restart (a new
process claiming the lowest free number), a pause (a process that does nothing for a few
steps, then wakes and sells from what its core still believes it holds), a burst (commits of
2-3 processes beside a grant or a reclaim, all at once) and two reclaims at once. A process
told ``FencedError`` stops.

The model keeps, per (sku, warehouse): ``on_hand``, ``sold``, and per node number the lease
units and the units its pending orders reserve; per number its fencing epoch, and which numbers
live sessions hold. Each step predicts its outcome (what a grant gives, what a reclaim returns,
which number and epoch a restart gets, ``FencedError`` for a call under a superseded epoch).
After every step the ``stock``, ``stock_leases`` and ``node_leases`` rows, read in one snapshot,
must equal the model, and the conservation invariant must hold on them: ``leased`` is the sum
of the lease units, ``leased + reserved + sold <= on_hand``, no lease below 0. A fenced commit
must write nothing (not even its commit token), and one reclaim by a live node must return a
dead node's unsold units to the pool, where a grant finds them again.

The default run (two seeds, 60 steps each) is deterministic: the same seed takes the same
steps with the same outcomes. The long run (``-m long``) adds races, a reclaim beside a dead
number's zombie commit, whose winner depends on timing (both outcomes are checked).
``PYORDER_LEASE_SEED=<seed>`` runs one seed only (to replay a failure; the failure message
prints the seed and the last steps).

Last, a grant or a reclaim whose session is cut while it waits for a lock fails as a
``StorageError`` (the keeper goes on), and the database is unchanged.
"""

import asyncio
import math
import os
import random
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field

import asyncpg
import pytest

from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.model import WriteBatch
from pyorder.storage.base import StorageError
from pyorder.storage.node_lease import LIVE_NODES_SQL, FencedError, LeaseConfig, NodeLease
from pyorder.storage.postgres import PostgresStore
from tests.support.postgres import fresh_postgres_database

Key = tuple[int, int]
"""(sku, warehouse)."""

STOCK: dict[Key, int] = {(1, 0): 30, (2, 0): 12, (1, 1): 7}
"""On hand per (sku, warehouse): small enough that grants shrink near sell-out."""
MAX_LIVE = 3
"""Live processes at most (restarts wait for a stop or a kill beyond that)."""
MAX_PROCESSES = 5
"""Live and zombie processes at most (each has a pool and a lease session)."""

LEASE = LeaseConfig(cluster=True, max_clock_skew_ms=10, heartbeat_s=3600)
"""Cluster mode; a small clock skew, so that a number used moments ago is handed out again
after 20 ms; no heartbeat (``watch`` is never started: a process acts only when a step says)."""


@dataclass
class Model:
    """What the database must hold (see the module doc)."""

    on_hand: dict[Key, int] = field(default_factory=lambda: dict(STOCK))
    sold: Counter[Key] = field(default_factory=Counter)
    units: Counter[tuple[Key, int]] = field(default_factory=Counter)
    """(key, node number) -> units the number's lease holds."""
    reserved: Counter[tuple[Key, int]] = field(default_factory=Counter)
    """(key, node number) -> units the number's pending orders reserve."""
    epochs: dict[int, int] = field(default_factory=dict)
    live: set[int] = field(default_factory=set)
    """Numbers whose lease session is alive."""

    def leased(self, key: Key) -> int:
        return sum(u for (k, _), u in self.units.items() if k == key)

    def free(self, key: Key) -> int:
        reserved = sum(u for (k, _), u in self.reserved.items() if k == key)
        return self.on_hand[key] - self.leased(key) - reserved - self.sold[key]

    def held_by(self, number: int) -> list[tuple[int, int, int]]:
        """(sku, warehouse, units > 0) of the number's lease, in (sku, warehouse) order."""
        return sorted((k[0], k[1], u) for (k, n), u in self.units.items() if n == number and u)


@dataclass
class Process:
    """One cluster node: its store (fenced by its claim) and what its core believes it holds."""

    name: str
    store: PostgresStore
    lease: NodeLease
    number: int
    epoch: int
    killed: bool = False
    paused: int = 0
    """Steps left to sleep (0: awake)."""
    told_fenced: bool = False
    """It got a ``FencedError``: it stops (a node must claim a number again to serve)."""
    units: Counter[Key] = field(default_factory=Counter)
    """Units its core may sell (its view of its lease)."""
    reserved: Counter[Key] = field(default_factory=Counter)
    """Units its core's pending orders reserve."""


Op = tuple[str, Key, int]
"""("sell" | "cancel" | "pay", key, units) of one commit."""


class Run:
    """One seeded run: the processes, the model, and the steps taken so far (for the report)."""

    def __init__(self, dsn: str, seed: int, *, races: bool = False) -> None:
        self.dsn = dsn
        self.races = races
        self.rng = random.Random(seed)
        self.model = Model()
        self.procs: list[Process] = []
        self.trace: list[str] = []
        self.started = 0
        self.seen: Counter[str] = Counter()
        """What the run exercised (for the coverage asserts): kills, fenced calls, ..."""
        self.checker: asyncpg.Connection | None = None

    # --- the run ----------------------------------------------------------------------------

    async def run(self, steps: int) -> None:
        self.checker = await asyncpg.connect(self.dsn)
        try:
            await self._catalogue()
            for _ in range(2):
                await self.restart()
            await self.check()
            for i in range(steps):
                await self.step(i)
                await self.check()
        finally:
            for proc in self.procs:
                await self._close(proc)
            await self.checker.close()

    async def step(self, i: int) -> None:
        for proc in [p for p in self.procs if p.told_fenced]:
            self.trace.append(f"{i}: {proc.name} stops, fenced off")
            await self._close(proc)
            self.procs.remove(proc)
        for proc in [p for p in self.procs if p.paused]:
            proc.paused -= 1
            if not proc.paused:
                self.trace.append(f"{i}: {proc.name} wakes")
                await self.wake(proc)
                return
        awake = [p for p in self.procs if not p.paused]
        live = [p for p in awake if not p.killed]
        if not awake and len(self.model.live) >= MAX_LIVE:
            self.trace.append(f"{i}: everyone sleeps")
            return
        choices: dict[str, int] = {
            "commit": 8 if awake else 0,
            "grant": 4 if awake else 0,
            "oversell": 1 if awake else 0,
            "kill": 2 if live else 0,
            "reclaim": 2 if awake else 0,
            "burst": 3 if len(awake) > 1 else 0,
            "reclaims": 1 if len(live) > 1 else 0,
            "stop": 1 if awake else 0,
            "restart": (4 if not live else 1) if len(self.model.live) < MAX_LIVE else 0,
            "pause": 2 if len(live) > 1 else 0,
        }
        kinds = [k for k, w in choices.items() if w]
        kind = self.rng.choices(kinds, weights=[choices[k] for k in kinds])[0]
        if kind == "restart" or not awake:
            if len(self.procs) >= MAX_PROCESSES:  # make room: the oldest zombie goes
                zombie = next(p for p in self.procs if p.killed)
                self.trace.append(f"{i}: {zombie.name} (zombie) is closed")
                await self._close(zombie)
                self.procs.remove(zombie)
            await self.restart()
            self.trace.append(f"{i}: started {self.procs[-1].name}")
            return
        if kind == "kill":
            proc = self.rng.choice([p for p in self.procs if not p.killed])
        else:
            proc = self.rng.choice(awake)
        state = " (zombie)" if proc.killed else ""
        self.trace.append(
            f"{i}: {kind}"
            if kind in ("burst", "reclaims")
            else f"{i}: {kind} by {proc.name}{state}"
        )
        if kind == "commit":
            await self.commit(proc, self._ops(proc))
        elif kind == "grant":
            await self.grant(proc, self._wants())
        elif kind == "oversell":
            await self.oversell(proc)
        elif kind == "kill":
            await self.kill(proc)
        elif kind == "reclaim":
            await self.reclaim(proc)
        elif kind == "burst":
            await self.burst(awake)
        elif kind == "reclaims":
            await self.reclaims(*self.rng.sample(live, 2))
        elif kind == "stop":
            await self.stop(proc)
        else:
            proc.paused = self.rng.randint(2, 6)

    # --- steps ------------------------------------------------------------------------------

    async def restart(self) -> None:
        """A new process claims the lowest free number and rebuilds from it (``node_view``):
        the number's lease and pending reservations are its core's now."""
        m = self.model
        number = min(n for n in range(256) if n not in m.live)
        store = PostgresStore(self.dsn, max_size=2)
        await store.open()
        lease = NodeLease(self.dsn, LEASE, holder=f"p{self.started}")
        await lease.acquire()
        m.epochs[number] = m.epochs.get(number, 0) + 1
        assert (lease.node, lease.epoch) == (number, m.epochs[number]), "restart's claim"
        m.live.add(number)
        store.fence = (lease.node, lease.epoch)
        store.lease_node = lease.node
        proc = Process(f"p{self.started}(n{number})", store, lease, number, lease.epoch)
        for (key, n), u in m.units.items():
            if n == number:
                proc.units[key] = u
        for (key, n), u in m.reserved.items():
            if n == number:
                proc.reserved[key] = u
        self.procs.append(proc)
        self.started += 1

    async def grant(self, proc: Process, wants: list[tuple[int, int, int]]) -> None:
        nodes = await proc.store.live_nodes()
        result: list[tuple[int, int, int]] | BaseException
        try:
            result = await proc.store.grant_stock(wants, nodes)
        except FencedError as e:
            result = e
        await self._granted(proc, wants, nodes, result)

    async def _granted(
        self,
        proc: Process,
        wants: list[tuple[int, int, int]],
        nodes: int,
        result: list[tuple[int, int, int]] | BaseException,
    ) -> None:
        """A grant gives each row what was asked, at most the pool, and near sell-out at most
        an even share among the live nodes (at least 1); a fenced process gets nothing."""
        m = self.model
        assert nodes == len(m.live), "live_nodes"
        if self._fenced(proc):
            assert isinstance(result, FencedError), f"{proc.name} granted under a stale epoch"
            self.seen["fenced"] += 1
            proc.told_fenced = True
            self.trace.append(f"   grant fenced off ({proc.name}, epoch {proc.epoch})")
            return
        if isinstance(result, BaseException):
            raise result
        expected = []
        for sku, wh, want in sorted(wants):
            free = m.free((sku, wh))
            give = min(want, free, max(1, math.ceil(free / max(1, nodes)))) if free > 0 else 0
            if give > 0:
                expected.append((sku, wh, give))
            self.seen["short grants" if give < want else "full grants"] += 1
        assert sorted(result) == expected, f"grant of {wants} to {proc.name}"
        for sku, wh, units in result:
            m.units[((sku, wh), proc.number)] += units
            proc.units[(sku, wh)] += units
        self.trace.append(f"   granted {result} (wanted {wants}, {nodes} live)")

    async def commit(self, proc: Process, ops: list[Op]) -> None:
        """One commit of the ops (their deltas merged per row, as the intake's batch does)."""
        if not ops:
            return
        batch = self._batch(ops)
        self.trace.append(f"   commit {ops}")
        if self._fenced(proc):
            await self._refused(proc, proc.store.commit(batch), batch.token)
            return
        self._check_core(proc)
        await proc.store.commit(batch)
        self._apply(proc, ops)

    def _batch(self, ops: list[Op]) -> WriteBatch:
        batch = WriteBatch(token=self.rng.getrandbits(62) + 1)
        for kind, (sku, wh), n in ops:
            if kind == "sell":
                batch.add_delta(sku, wh, 0, n, 0)
            elif kind == "cancel":
                batch.add_delta(sku, wh, 0, -n, 0)
            else:
                batch.add_delta(sku, wh, 0, -n, n)
        return batch

    def _apply(self, proc: Process, ops: list[Op]) -> None:
        """A committed batch: the lease and reservations of the process's number move."""
        self.seen["zombie commits" if proc.killed else "commits"] += 1
        m = self.model
        for kind, key, n in ops:
            if kind == "sell":
                m.units[(key, proc.number)] -= n
                m.reserved[(key, proc.number)] += n
                proc.units[key] -= n
                proc.reserved[key] += n
            elif kind == "cancel":
                m.reserved[(key, proc.number)] -= n
                m.units[(key, proc.number)] += n
                proc.reserved[key] -= n
                proc.units[key] += n
            else:
                m.reserved[(key, proc.number)] -= n
                m.sold[key] += n
                proc.reserved[key] -= n

    async def burst(self, awake: list[Process]) -> None:
        """Commits of 2-3 processes and a grant or a reclaim, all at once (a node's keeper
        refills while its intake commits; nodes commit side by side). Commits never change the
        pool (they move units between a lease and reserved/sold), so the grant's outcome is
        known beforehand. A reclaim racing a dead number's zombie commit has two right
        outcomes: the commit lands first and the reclaim returns what is left after it, or the
        reclaim raises the epoch first and the commit is fenced off. Only with ``races`` may a
        burst hold such a pair: the winner depends on timing, so a replay of the seed may take
        other steps after it."""
        m = self.model
        actor = self.rng.choice(awake)
        action = self.rng.choice(["grant", "reclaim"])
        takes_over = action == "reclaim" and not actor.killed
        dead = sorted({n for (_, n), u in m.units.items() if u and n not in m.live})
        plans: list[tuple[Process, list[Op], bool]] = []
        for proc in self.rng.sample(awake, min(len(awake), self.rng.randint(2, 3))):
            ops = self._ops(proc)
            racing = takes_over and proc.number not in m.live and not self._fenced(proc)
            if racing:
                after = Counter(proc.units)
                for kind, key, n in ops:
                    after[key] += -n if kind == "sell" else n if kind == "cancel" else 0
                # The reclaim reads which dead numbers hold units before it takes them over:
                # both orders must find this one holding some.
                if not self.races or proc.number not in dead or sum(after.values()) <= 0:
                    continue
            if ops:
                plans.append((proc, ops, racing))
        wants = self._wants()
        nodes = await actor.store.live_nodes()
        self.trace.append(
            f"   burst: {action} by {actor.name} with commits "
            + "; ".join(f"{p.name} {ops}" for p, ops, _ in plans)
        )
        batches = [self._batch(ops) for _, ops, _ in plans]
        for proc, _, racing in plans:
            if not self._fenced(proc) and not racing:
                self._check_core(proc)
        pool = asyncio.create_task(
            actor.store.grant_stock(wants, nodes)
            if action == "grant"
            else actor.store.reclaim_stock(actor.lease)
        )
        # A racing commit starts up to 8 ms late, so that either side may win.
        delays = [self.rng.random() * 0.008 if racing else 0.0 for _, _, racing in plans]
        commits = await asyncio.gather(
            *(
                _later(delay, proc.store.commit(batch))
                for (proc, _, _), batch, delay in zip(plans, batches, delays, strict=True)
            ),
            return_exceptions=True,
        )
        pool_result: list[tuple[int, int, int]] | BaseException
        try:
            pool_result = await pool
        except FencedError as e:
            pool_result = e
        for (proc, ops, racing), batch, outcome in zip(plans, batches, commits, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, FencedError) or not (self._fenced(proc) or racing):
                    raise outcome
                assert not await self._committed(batch.token), "a fenced commit was written"
                self.seen["fenced"] += 1
                proc.told_fenced = True
                self.seen["fenced in a race" if racing else "fenced in a burst"] += 1
                self.trace.append(f"   {proc.name} fenced off")
            else:
                assert not self._fenced(proc), f"{proc.name} committed under a stale epoch"
                self._apply(proc, ops)
                if racing:
                    self.seen["won a race"] += 1
                    self.trace.append(f"   {proc.name} committed before the reclaim")
        if action == "grant":
            await self._granted(actor, wants, nodes, pool_result)
        elif isinstance(pool_result, BaseException):
            raise pool_result
        else:
            await self._reclaimed(actor, dead, pool_result)

    async def oversell(self, proc: Process) -> None:
        """A commit reserving more than the lease holds (or on a row it holds no lease on) is
        refused whole: the lease's CHECK (units >= 0), or the rows-found check."""
        key = self.rng.choice(sorted(STOCK))
        n = proc.units[key] + self.rng.randint(1, 3)
        batch = WriteBatch(token=self.rng.getrandbits(62) + 1)
        batch.add_delta(key[0], key[1], 0, n, 0)
        self.trace.append(f"   reserve {n} of {key} (core holds {proc.units[key]})")
        if self._fenced(proc):
            await self._refused(proc, proc.store.commit(batch), batch.token)
            return
        self._check_core(proc)
        with pytest.raises(StorageError) as caught:
            await proc.store.commit(batch)
        assert not isinstance(caught.value, FencedError), caught.value
        assert not await self._committed(batch.token), "an oversold commit's token was written"

    async def kill(self, proc: Process) -> None:
        """Cut the process's lease session from the server side; it goes on as a zombie (its
        pool still works) until another process raises its number's epoch."""
        assert self.checker is not None
        await self.checker.execute("SELECT pg_terminate_backend($1)", proc.lease.backend_pid)
        await self._until_gone(proc)
        proc.killed = True
        self.model.live.discard(proc.number)
        self.seen["kills"] += 1

    async def _until_gone(self, proc: Process) -> None:
        """Wait until the server has ended the process's lease session (its number is free)
        and the process has seen it end: until then a reclaim through the lease races with
        the session's end (``test_a_reclaim_or_grant_whose_session_is_cut_...``)."""
        assert self.checker is not None
        for _ in range(1000):
            live = {int(r[0]) for r in await self.checker.fetch(LIVE_NODES_SQL)}
            if proc.number not in live and not proc.lease.held:
                return
            await asyncio.sleep(0.005)
        pytest.fail(f"{proc.name}'s lease session outlived its end")

    async def reclaim(self, proc: Process) -> None:
        m = self.model
        dead = sorted({n for (_, n), u in m.units.items() if u and n not in m.live})
        await self._reclaimed(proc, dead, await proc.store.reclaim_stock(proc.lease))

    async def _reclaimed(
        self, proc: Process, dead: list[int], back: list[tuple[int, int, int]]
    ) -> None:
        """A live process takes back every dead number's lease (raising its epoch): one reclaim
        returns all their units, and a grant finds them in the pool again. A zombie's lease
        session is gone, so its reclaim takes nothing."""
        m = self.model
        expected = [] if proc.killed else [row for n in dead for row in m.held_by(n)]
        assert back == expected, f"reclaim by {proc.name} (dead holders {dead})"
        self.trace.append(f"   reclaimed {back}")
        if proc.killed:
            return
        for n in dead:
            m.epochs[n] += 1
            for key in STOCK:
                m.units[(key, n)] = 0
        await self._sellable_again(proc, back)

    async def reclaims(self, first: Process, second: Process) -> None:
        """Two live processes reclaim at once: each dead number is taken over by one of them
        (the other finds its lock taken, or nothing left to take: it may raise the epoch once
        more), and together they return every unit the dead numbers held, once."""
        m = self.model
        dead = sorted({n for (_, n), u in m.units.items() if u and n not in m.live})
        expected = sorted(row for n in dead for row in m.held_by(n))
        backs = await asyncio.gather(
            first.store.reclaim_stock(first.lease), second.store.reclaim_stock(second.lease)
        )
        self.trace.append(f"   reclaimed {backs[0]} and {backs[1]} (dead holders {dead})")
        assert sorted(backs[0] + backs[1]) == expected, "two reclaims at once"
        assert self.checker is not None
        rows = await self.checker.fetch("SELECT node, epoch FROM node_leases")
        epochs = {int(r[0]): int(r[1]) for r in rows}
        for n in dead:
            assert epochs[n] in (m.epochs[n] + 1, m.epochs[n] + 2), f"epoch of {n}"
            self.seen["taken over twice"] += epochs[n] == m.epochs[n] + 2
            m.epochs[n] = epochs[n]
            for key in STOCK:
                m.units[(key, n)] = 0
        await self._sellable_again(first, backs[0] + backs[1])

    async def _sellable_again(self, proc: Process, back: list[tuple[int, int, int]]) -> None:
        """The issue's bound: after one reclaim the dead nodes' units are in the pool again,
        and a grant (to the reclaiming node) finds them."""
        self.seen["units reclaimed"] += sum(u for _, _, u in back)
        await self.check()
        returned: Counter[Key] = Counter()
        for sku, wh, units in back:
            returned[(sku, wh)] += units
        if returned:
            before = dict(proc.units)
            await self.grant(proc, [(k[0], k[1], u) for k, u in sorted(returned.items())])
            for key in returned:
                assert proc.units[key] > before.get(key, 0), f"reclaimed {key} not granted again"

    async def stop(self, proc: Process) -> None:
        """Graceful stop: every leased unit back to the pool, then the number is free."""
        if self._fenced(proc):  # its number is another's now: it gives back nothing
            await self._refused(proc, proc.store.give_back_stock())
        else:
            self._check_core(proc)
            expected = self.model.held_by(proc.number)
            back = await proc.store.give_back_stock()
            assert back == expected, f"give-back of {proc.name}"
            self.trace.append(f"   gave back {back}")
            for key in STOCK:
                self.model.units[(key, proc.number)] = 0
            self.model.live.discard(proc.number)
        await self._close(proc)
        if not self._fenced(proc):  # the server ends the session after the client left
            await self._until_gone(proc)
        self.procs.remove(proc)

    async def wake(self, proc: Process) -> None:
        """A paused process wakes and sells from what its core believes it holds (refused if
        its number was taken over meanwhile); with nothing to sell it asks for a grant."""
        held = sorted(k for k, u in proc.units.items() if u > 0)
        fenced = self.seen["fenced"]
        if held:
            key = self.rng.choice(held)
            await self.commit(proc, [("sell", key, self.rng.randint(1, proc.units[key]))])
        else:
            await self.grant(proc, self._wants())
        if self.seen["fenced"] > fenced:
            self.seen["woke fenced"] += 1

    # --- drawing ----------------------------------------------------------------------------

    def _wants(self) -> list[tuple[int, int, int]]:
        keys = self.rng.sample(sorted(STOCK), self.rng.randint(1, len(STOCK)))
        return [(sku, wh, self.rng.randint(1, 10)) for sku, wh in keys]

    def _ops(self, proc: Process) -> list[Op]:
        """1-3 ops from the process's core: sells within its units, cancels and payments
        within its reservations (applied in order to a copy, so later ops see earlier ones)."""
        units, reserved = Counter(proc.units), Counter(proc.reserved)
        ops: list[Op] = []
        for _ in range(self.rng.randint(1, 3)):
            kind = self.rng.choice(["sell", "sell", "cancel", "pay"])
            pool = units if kind == "sell" else reserved
            keys = sorted(k for k, u in pool.items() if u > 0)
            if not keys:
                continue
            key = self.rng.choice(keys)
            n = self.rng.randint(1, pool[key])
            ops.append((kind, key, n))
            if kind == "sell":
                units[key] -= n
                reserved[key] += n
            elif kind == "cancel":
                reserved[key] -= n
                units[key] += n
            else:
                reserved[key] -= n
        return ops

    # --- checks -----------------------------------------------------------------------------

    def _fenced(self, proc: Process) -> bool:
        return self.model.epochs[proc.number] != proc.epoch

    def _check_core(self, proc: Process) -> None:
        """An unfenced process is its number's only writer: its core matches the model."""
        for key in STOCK:
            assert proc.units[key] == self.model.units[(key, proc.number)], (proc.name, key)
            assert proc.reserved[key] == self.model.reserved[(key, proc.number)], (proc.name, key)

    async def _refused(self, proc: Process, call: Awaitable[object], token: int = 0) -> None:
        """A call under a superseded epoch raises ``FencedError`` and writes nothing (the
        snapshot check after the step sees the database unchanged)."""
        with pytest.raises(FencedError):
            await call
        self.seen["fenced"] += 1
        proc.told_fenced = True
        self.trace.append(f"   fenced off ({proc.name}, epoch {proc.epoch})")
        if token:
            assert not await self._committed(token), "a fenced commit's token was written"

    async def _committed(self, token: int) -> bool:
        assert self.checker is not None
        found = await self.checker.fetchval(
            "SELECT count(*) FROM intake_commits WHERE token = $1", token
        )
        return bool(found)

    async def check(self) -> None:
        """The database, read in one snapshot, against the model and the invariant."""
        assert self.checker is not None
        async with self.checker.transaction(isolation="repeatable_read", readonly=True):
            stock = await self.checker.fetch(
                "SELECT sku, warehouse, on_hand, leased, reserved, sold FROM stock"
            )
            leases = await self.checker.fetch(
                "SELECT sku, warehouse, node, units FROM stock_leases"
            )
            epochs = await self.checker.fetch("SELECT node, epoch FROM node_leases")
        units: Counter[tuple[Key, int]] = Counter()
        for sku, wh, node, u in leases:
            assert u >= 0, f"node {node} holds {u} of {(sku, wh)}"
            units[((sku, wh), node)] = u
        m = self.model
        for sku, wh, on_hand, leased, reserved, sold in stock:
            key = (sku, wh)
            leases_sum = sum(u for (k, _), u in units.items() if k == key)
            assert leased == leases_sum, f"{key}: stock.leased {leased} != leases {leases_sum}"
            assert leased + reserved + sold <= on_hand, f"{key} oversold"
            assert min(leased, reserved, sold) >= 0, f"{key}: {leased} {reserved} {sold}"
            model_reserved = sum(u for (k, _), u in m.reserved.items() if k == key)
            assert (on_hand, leased, reserved, sold) == (
                m.on_hand[key],
                m.leased(key),
                model_reserved,
                m.sold[key],
            ), f"{key}: database (on_hand, leased, reserved, sold) != model"
        assert +units == +m.units, "stock_leases != model"
        assert {int(n): int(e) for n, e in epochs} == m.epochs, "node_leases epochs != model"

    # --- setup and teardown -----------------------------------------------------------------

    async def _catalogue(self) -> None:
        store = PostgresStore(self.dsn)
        await store.open()
        batch = WriteBatch()
        batch.warehouses += [Warehouse(0, "west", "acme"), Warehouse(1, "east", "acme")]
        batch.skus += [Sku(1, "acme", "phone", 99_900, "CNY"), Sku(2, "acme", "case", 900, "CNY")]
        batch.stock_rows += [StockRow(sku, wh, n, 0, 0) for (sku, wh), n in STOCK.items()]
        await store.commit(batch)
        await store.close()

    async def _close(self, proc: Process) -> None:
        await proc.lease.release()
        await proc.store.close()


async def _later(delay_s: float, call: Awaitable[None]) -> None:
    if delay_s:
        await asyncio.sleep(delay_s)
    await call


def _seeds(default: list[int]) -> list[int]:
    chosen = os.environ.get("PYORDER_LEASE_SEED", "").strip()
    return [int(chosen)] if chosen else default


def _run(seed: int, steps: int, *, races: bool = False) -> Run:
    with fresh_postgres_database("pyorder_lease_model") as dsn:
        run = Run(dsn, seed, races=races)
        try:
            asyncio.run(run.run(steps))
        except BaseException as e:
            tail = "\n".join(run.trace[-40:])
            e.add_note(f"seed {seed} (replay: PYORDER_LEASE_SEED={seed}); last steps:\n{tail}")
            raise
    return run


# Seeds whose runs kill holders of units, fence a stale process and take units back (checked).
@pytest.mark.parametrize("seed", _seeds([3, 5]))
def test_stock_leases_match_the_model_after_every_step(seed: int) -> None:
    run = _run(seed, steps=60)
    assert run.seen["kills"]
    assert run.seen["fenced"]
    assert run.seen["units reclaimed"]


@pytest.mark.long
def test_stock_leases_match_the_model_long() -> None:
    """30 seeds x 300 steps, with races (a reclaim beside a dead number's commit); what they
    exercised together must include every kind of outcome."""
    seen: Counter[str] = Counter()
    for seed in _seeds(list(range(100, 130))):
        seen += _run(seed, steps=300, races=True).seen
    for what in [
        "kills",
        "zombie commits",
        "units reclaimed",
        "woke fenced",
        "fenced in a burst",
        "won a race",
        "fenced in a race",
        "short grants",
    ]:
        assert seen[what], what


# --- a lease session cut in the middle of a reclaim or a grant --------------------------------


async def _blocked_then_cut(dsn: str, *, reclaim: bool) -> BaseException | None:
    """A reclaim (or a grant) waits on a row lock the test holds, and the session it runs on is
    cut meanwhile (a database restart, a network cut): the call's error, the database as before."""
    run = Run(dsn, 0)
    run.checker = checker = await asyncpg.connect(dsn)
    blocker = await asyncpg.connect(dsn)
    try:
        await run._catalogue()
        await run.restart()
        await run.restart()
        live, dead = run.procs
        await run.grant(dead, [(1, 0, 5)])
        await run.kill(dead)
        tx = blocker.transaction()
        await tx.start()
        if reclaim:  # the takeover's epoch raise waits for the dead number's row
            await blocker.execute("SELECT 1 FROM node_leases WHERE node = $1 FOR UPDATE", 1)
            call = asyncio.create_task(live.store.reclaim_stock(live.lease))
        else:  # the grant waits for the stock row
            await blocker.execute("SELECT 1 FROM stock WHERE sku = 1 FOR UPDATE")
            call = asyncio.create_task(live.store.grant_stock([(1, 0, 3)], 1))
        await asyncio.sleep(0.3)
        assert not call.done()
        waiting = await checker.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        assert len(waiting) == 1
        await checker.execute("SELECT pg_terminate_backend($1)", waiting[0][0])
        error: BaseException | None = None
        try:
            await call
        except Exception as e:
            error = e
        await tx.rollback()
        await run.check()  # nothing was written
        return error
    finally:
        for proc in run.procs:
            await run._close(proc)
        await blocker.close()
        await checker.close()


@pytest.mark.parametrize("reclaim", [True, False], ids=["reclaim", "grant"])
def test_a_reclaim_or_grant_whose_session_is_cut_fails_as_a_storage_error(reclaim: bool) -> None:
    with fresh_postgres_database("pyorder_lease_cut") as dsn:
        error = asyncio.run(_blocked_then_cut(dsn, reclaim=reclaim))
    assert isinstance(error, StorageError), repr(error)
