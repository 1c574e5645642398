"""The unit of work's extension point: a capability's own part of a write batch and snapshot.

A capability that owns tables stages its rows in a ``Part`` of the batch
(``WriteBatch.part(KIND)``, made empty on first use) and reads what a restart needs from its
part of the snapshot (``Snapshot.part(KIND)``). Its ``PartKind`` says how: the empty part, the
parameterless SELECTs that load it (the same text on both stores) and how their rows become the
snapshot part. The part itself yields its statements, each in both stores' dialects, with the
rows to run them with. The stores write every registered part (``pyorder.parts``) inside the
batch's one transaction, at one fixed place and in the registry's order, so the group commit's
prefix guarantee covers a part's rows like any others.

Payments, logistics, returns and events use this (``pyorder.<capability>.storage``), and so
do the outbox and webhook-event rows they share (``pyorder.storage.outbox``). The catalogue,
the orders and idempotency records stay on the named fields of ``pyorder.model.WriteBatch``
and ``Snapshot``, with their rows in ``pyorder.storage.codec``: the stores write those
themselves, around the Rust intake's rows.

Times are ms since the Unix epoch (UTC); money is integer minor units, as everywhere.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Row(Protocol):
    """A positional row as a store reads it: a ``sqlite3`` tuple or an ``asyncpg.Record``."""

    def __getitem__(self, index: int, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement of a part, in each store's dialect (``?`` and ``$n`` placeholders)."""

    sqlite: str
    postgres: str


Write = tuple[Statement, list[tuple[Any, ...]]]
"""A statement and the rows to run it with (``executemany``); never empty."""


class Part(Protocol):
    """A capability's rows staged in one batch."""

    def __len__(self) -> int:
        """How many rows are staged (0: nothing to write)."""
        ...

    def writes(self) -> Iterator[Write]:
        """The statements to run, in order, each with its rows (none without rows). Asked of
        every part of a batch at commit, so a statement may take its time from the clock."""
        ...


P = TypeVar("P", bound=Part)
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class PartKind(Generic[P, S]):
    """How a capability's part is made, loaded and named. ``name`` keys it in the batch and
    the snapshot (unique among the registered parts)."""

    name: str
    staged: Callable[[], P]
    """An empty part, for a new batch."""
    loads: tuple[str, ...]
    """Parameterless SELECTs whose rows make the snapshot part (the same text on both stores)."""
    snapshot: Callable[[Sequence[Sequence[Row]]], S]
    """The snapshot part from the rows of ``loads``, one sequence per query, in order."""
    of_orders: Callable[[S, Callable[[int], bool]], S] | None = None
    """The snapshot part cut to the orders a predicate of order ids accepts (a cluster node
    holds its own orders' state only: ``pyorder.cluster.stock.node_view``); None: the part
    holds no order's state, and is kept whole."""

    def empty(self) -> S:
        """The snapshot part of an empty store."""
        return self.snapshot([() for _ in self.loads])
