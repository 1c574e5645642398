"""Purchase limits claimed in PostgreSQL, so that a buyer over a SKU's ``limit_per_buyer`` on
one cluster node is over it on every node (``docs/scale-out.md``, "Purchase limits across
nodes").

A node's core counts only what it knows of a buyer: the paid orders at its last rebuild, and
its own pending orders. So in cluster mode, before an order holding a limited SKU is staged, its
node **claims** the order's units of each limited SKU in one short transaction
(``PostgresStore.claim_limits``):

1. ``pg_advisory_xact_lock(LOCK_CLASS, key)`` for each (sku, buyer) of the request, keys sorted
   (two requests never wait on each other in a cycle);
2. claims of dead nodes (the rule of ``key_claims``, ``DEAD``) for those pairs are deleted;
3. a new statement (a new snapshot under READ COMMITTED, taken after the locks) counts what
   the buyer holds: units in committed orders the core counts (``pending_payment``,
   ``in_review`` and ``paid``: cancelled and expired orders give their units back, returned
   units still count) plus the units of live claims of orders not committed yet;
4. each order, in placing order, is accepted while held + its units <= the SKU's limit in
   ``skus`` (``decide``); a claim row ``limit_claims(claim = order id, sku, buyer, units, node,
   epoch, claimed_ms)`` is inserted for each accepted order and SKU.

A claim stops counting when its order commits: the commit's transaction deletes it through the
part ``LIMIT_CLAIMS`` (on PostgreSQL the function ``settle_limit_claim``, migration 12), so at
every snapshot the order counts once, as its claim or as itself. That deletion **fences** the
claim: if it finds fewer rows than were claimed (another node took the claim over as dead), the
commit fails and writes nothing, so an order whose claim stopped counting never lands. A refused
or failed order's claim is deleted by its node (``RELEASE_SQL``).

A claim is **dead** (stops counting, and is deleted by the next claim of its (sku, buyer)) when:

* it is the claiming node's own (same number and epoch), of an order older than the claiming
  request's and no longer in flight there: a release that failed;
* its node number was claimed again since, or its node holds no lease lock and has not written
  for ``key_claims.CLAIM_GRACE_MS``: the node is gone (its commits fail the fence);
* or it is older than ``CLAIM_TTL_MS``: a backstop far above a commit's duration.

Times are the database's clock, in milliseconds since the epoch; units are whole SKU units.
"""

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.storage.key_claims import CLAIM_GRACE_MS
from pyorder.storage.node_lease import DB_NOW_MS, NODE_LOCK

CLAIM_TTL_MS = 30_000
"""Age after which any limit claim stops counting (ms). A claim lives from its request's claim
to its order's commit (milliseconds); a commit later than this fails rather than lands."""

LOCK_CLASS = 0x7079_0003
"""First key of the transaction-level advisory locks on (sku, buyer) pairs (second key:
``lock_key``). Distinct from the node-lease locks' first keys (``node_lease``)."""

Orders = Sequence[tuple[int, dict[int, int]]]
"""Orders of one request in placing order: (order id, {limited sku: units})."""


def lock_key(sku: int, buyer: str) -> int:
    """The second advisory-lock key of (sku, buyer): a signed 32-bit hash, the same on every
    node. Two pairs with one key only wait for each other."""
    digest = hashlib.blake2b(f"{sku}:{buyer}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(skus: Sequence[int], buyer: str) -> list[int]:
    """The lock keys of a request's pairs, sorted and distinct (the order every node takes)."""
    return sorted({lock_key(s, buyer) for s in skus})


LOCK_SQL = "SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int[]) AS k"
"""Take the locks of $2 (sorted keys) under first key $1, in array order, until the end of the
transaction."""

DEAD = (
    "(c.node = $3 AND c.epoch = $4 AND NOT c.claim = ANY($5::bigint[])"
    " AND c.claim <= (SELECT max(f) FROM unnest($5::bigint[]) AS f))"
    f" OR c.claimed_ms < {DB_NOW_MS} - {CLAIM_TTL_MS}"
    " OR NOT EXISTS (SELECT 1 FROM node_leases n WHERE n.node = c.node AND n.epoch = c.epoch"
    f"  AND (n.seen_ms >= {DB_NOW_MS} - {CLAIM_GRACE_MS} OR EXISTS (SELECT 1 FROM pg_locks l"
    "  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    f"  AND l.classid::bigint = {NODE_LOCK} AND l.objid::bigint = c.node)))"
)
"""Whether claim ``c`` is dead: $3 and $4 the claiming node's number and epoch, $5 the ids of
the orders it has in flight (their claims are alive), its own among them. A node's order ids
grow, and it adds an order to its in-flight set before its first await after minting it: so
its own claim of an id below the newest of $5 and not in $5 was settled before $5 was read,
while one above it is of a request that began since (its claim may have committed while this
one waited for the lock) and is alive."""

DROP_DEAD_SQL = (
    f"DELETE FROM limit_claims c WHERE c.sku = ANY($1::bigint[]) AND c.buyer = $2 AND ({DEAD})"
)
"""Delete the dead claims of buyer $2 on SKUs $1 (parameters $3-$5 as in ``DEAD``)."""

HELD_SQL = (
    "SELECT k.sku, s.limit_per_buyer,"
    " (SELECT COALESCE(SUM(l.quantity), 0) FROM orders o JOIN order_lines l ON l.order_id = o.id"
    "  WHERE o.buyer = $2 AND o.status IN ('pending_payment', 'in_review', 'paid')"
    "  AND l.sku = k.sku)::bigint"
    " + (SELECT COALESCE(SUM(c.units), 0) FROM limit_claims c"
    "  WHERE c.sku = k.sku AND c.buyer = $2)::bigint"
    " FROM unnest($1::bigint[]) AS k(sku) JOIN skus s ON s.id = k.sku"
)
"""(sku, limit, units held) of buyer $2 for each SKU of $1: units of committed orders the core
counts plus units of claims (run after ``DROP_DEAD_SQL``: every claim left is alive)."""

INSERT_SQL = (
    "INSERT INTO limit_claims (claim, sku, buyer, units, node, epoch, claimed_ms)"
    f" SELECT t.c, t.s, $4, t.u, $5, $6, {DB_NOW_MS}"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(c, s, u)"
)
"""Insert claims: $1 order ids, $2 SKUs, $3 units (one element per claim row), $4 buyer, $5 and
$6 the node's number and epoch."""

RELEASE_SQL = (
    "DELETE FROM limit_claims WHERE claim = ANY($1::bigint[]) AND node = $2 AND epoch = $3"
)
"""Give up the claims of orders $1 (refused, or their commit failed) of node $2, epoch $3."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What a claim decided: the orders accepted (claimed), and the refused ones with the SKU
    each would have taken over its limit."""

    accepted: list[tuple[int, dict[int, int]]]
    refused: dict[int, int]


def decide(orders: Orders, held: dict[int, tuple[int, int]]) -> Decision:
    """Accept ``orders`` one by one, as the core does, against ``held``: sku -> (limit, units
    held). A SKU with no limit (0, or not in ``held``) never refuses."""
    taken = {sku: units for sku, (_, units) in held.items()}
    accepted: list[tuple[int, dict[int, int]]] = []
    refused: dict[int, int] = {}
    for order_id, lines in orders:
        over = next(
            (
                sku
                for sku, units in sorted(lines.items())
                if held.get(sku, (0, 0))[0] > 0 and taken[sku] + units > held[sku][0]
            ),
            None,
        )
        if over is not None:
            refused[order_id] = over
            continue
        for sku, units in lines.items():
            if sku in taken:
                taken[sku] += units
        accepted.append((order_id, lines))
    return Decision(accepted, refused)


def claim_columns(accepted: Orders) -> tuple[list[int], list[int], list[int]]:
    """``INSERT_SQL``'s $1-$3: order ids, SKUs and units, one element per (order, sku)."""
    ids: list[int] = []
    skus: list[int] = []
    units: list[int] = []
    for order_id, lines in accepted:
        for sku, n in sorted(lines.items()):
            ids.append(order_id)
            skus.append(sku)
            units.append(n)
    return ids, skus, units


# --- the commit's part: claims deleted with their orders -----------------------------------

_SETTLE = Statement(
    # SQLite never claims (single-process): the same deletion, its count unchecked.
    "DELETE FROM limit_claims WHERE claim = ? AND ? > 0",
    "SELECT settle_limit_claim($1, $2)",
)


@dataclass(slots=True)
class StagedClaims:
    """The limit claims to delete in one batch: order id -> claim rows it has (one per limited
    SKU). Staged with the order's rows, by a cluster node only."""

    rows: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, order_id: int, skus: int) -> None:
        self.rows[order_id] = skus

    def writes(self) -> Iterator[Write]:
        if self.rows:
            yield _SETTLE, list(self.rows.items())


def _nothing(rows: Sequence[Sequence[Row]]) -> None:
    """No snapshot part: claims are not loaded (a rebuilt node has none in flight)."""
    return None


LIMIT_CLAIMS = PartKind("limit_claims", StagedClaims, (), _nothing)
"""The part that deletes the committed orders' limit claims (registered in ``pyorder.parts``,
last: it reads nothing the others write)."""
