"""Idempotency-Keys claimed in PostgreSQL, so that a key runs on one node of a cluster
(``docs/scale-out.md``, "Idempotency-Keys across nodes").

In cluster mode a node claims a key before it runs the request, in the statement that also
reads the key's stored response (the one read a keyed request made anyway): so a keyed request
costs no extra round trip. A claim is a row ``idempotency_claims(principal, key, node, epoch,
claimed_ms)``; whoever inserts it (or takes over a dead one) runs the request, everyone else
replays the stored response or answers 409 while it runs. The claim row stays after the
response is stored (the stored response is what later requests see first) and goes with it
when ``purge_idempotency`` deletes old keys; a request that fails (5xx) deletes it.

A claim is **dead**, and another node takes it over, when:

* it is the claiming node's own (same node number and epoch) and that node is not running the
  key (a release that failed): the node's in-memory set of keys in flight is authoritative;
* its node number was claimed again since (``node_leases.epoch`` moved on): the old epoch's
  commits are fenced, so its request can no longer land;
* its node holds no lease lock (its session ended: killed, or cut) and has not written for
  ``CLAIM_GRACE_MS`` (``node_leases.seen_ms``, which every commit and heartbeat of the holder
  writes): a node whose lease session alone was cut, and which still commits, keeps its claims;
* or it is older than ``CLAIM_TTL_MS``: a backstop for a claim a live node failed to delete,
  far longer than any request runs.

Times are the database's clock, in milliseconds since the epoch.
"""

from collections.abc import Iterable
from typing import Any

from pyorder.storage import codec
from pyorder.storage.base import KeyClaim
from pyorder.storage.node_lease import DB_NOW_MS, NODE_LOCK

CLAIM_GRACE_MS = 5_000
"""How long a node without its lease lock must have been silent (no commit, no heartbeat)
before its claims are taken over (ms): five heartbeats."""
CLAIM_TTL_MS = 300_000
"""Age after which any claim is taken over (ms): 5 minutes, far above a request's duration."""

_STORED = f"SELECT {codec.IDEMPOTENCY_COLUMNS} FROM idempotency WHERE principal = $1 AND key = $2"

CLAIM_SQL = (
    f"WITH stored AS ({_STORED}), claimed AS ("
    " INSERT INTO idempotency_claims AS c (principal, key, node, epoch, claimed_ms)"
    f" SELECT $1, $2, $3, $4, {DB_NOW_MS}"
    " WHERE NOT EXISTS (SELECT 1 FROM stored WHERE created_ms >= $5)"
    " ON CONFLICT (principal, key) DO UPDATE SET node = excluded.node,"
    " epoch = excluded.epoch, claimed_ms = excluded.claimed_ms"
    " WHERE (c.node = excluded.node AND c.epoch = excluded.epoch)"
    f" OR c.claimed_ms < {DB_NOW_MS} - {CLAIM_TTL_MS}"
    " OR NOT EXISTS (SELECT 1 FROM node_leases n WHERE n.node = c.node AND n.epoch = c.epoch"
    f"  AND (n.seen_ms >= {DB_NOW_MS} - {CLAIM_GRACE_MS} OR EXISTS (SELECT 1 FROM pg_locks l"
    "  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    f"  AND l.classid::bigint = {NODE_LOCK} AND l.objid::bigint = c.node)))"
    " RETURNING 1)"
    f" SELECT (SELECT count(*) FROM claimed), s.* FROM (SELECT 1) AS one"
    " LEFT JOIN stored AS s ON true"
)
"""Claim a key and read its stored response, in one statement. $1 principal, $2 key, $3 and
$4 the claiming node's number and epoch, $5 the oldest ``created_ms`` of a stored response
still replayed. A fresh stored response means no claim is tried; an old one is returned with
the claim (the caller purges it before running). Returns (claimed 0/1, the stored row's
columns or NULLs)."""

RELEASE_SQL = (
    "DELETE FROM idempotency_claims WHERE principal = $1 AND key = $2 AND node = $3 AND epoch = $4"
)
"""Give a claim up (the request failed, nothing of it was written): $1 principal, $2 key,
$3 node, $4 epoch. A claim taken over meanwhile is someone else's and stays."""

PURGE_SQL = "DELETE FROM idempotency_claims WHERE claimed_ms < $1"
"""Claims older than the retention of stored responses ($1, ms): their keys are forgotten."""


def key_claim_from_row(row: Iterable[Any]) -> KeyClaim:
    """A ``KeyClaim`` from a row of ``CLAIM_SQL``."""
    values = tuple(row)
    stored = None if values[1] is None else codec.idempotency_from_row(values[1:])
    return KeyClaim(claimed=bool(values[0]), stored=stored)
