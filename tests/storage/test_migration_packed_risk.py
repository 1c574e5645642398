"""Migration 21 (an allowed order's risk decision packed, ``orders.risk_packed``) on a database
at version 20 that holds an allowed order with its decision as JSON text (``orders.risk``):
after it, that decision still reads as it was, the row is untouched, and a decision packed
beside it reads first."""

import msgspec
import pytest

from pyorder.model import WriteBatch
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.records import Decision, Reason
from pyorder.storage import migrations
from pyorder.storage import postgres as postgres_store
from pyorder.storage import sqlite as sqlite_store
from pyorder.storage.base import Store
from pyorder.storage.migrations import MIGRATIONS, pending

from .backends import Backend
from .records import catalog, order

PACKED = 21
MODEL = "0c3390a79a400244"
JSON_RISK = f'[3,"{MODEL}","default",0,[],[["amount",1999,0.25],["phone_buyers_24h",null,0.1]]]'


def _at_20(store: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``store`` a database at version 20 holding orders 1 and 2, order 2 allowed with its
    decision as version 19's JSON text."""
    older = tuple(m for m in MIGRATIONS if m.version < PACKED)
    with monkeypatch.context() as m:
        for module in (sqlite_store, postgres_store):
            m.setattr(module, "pending", lambda current: pending(current, older))

        async def fill(s: Store) -> None:
            await s.commit(catalog())
            await s.commit(WriteBatch(orders=[order(1), order(2)]))

        store.run(fill)
    store.query(f"UPDATE orders SET risk = '{JSON_RISK}' WHERE id = 2")
    assert store.query("SELECT MAX(version) FROM schema_migrations") == [(PACKED - 1,)]


def test_decisions_stored_as_json_read_the_same_after_the_migration(
    store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_20(store, monkeypatch)

    async def read(s: Store) -> tuple[int, Decision | None, Decision | None]:
        return await s.schema_version(), await s.risk_decision(1), await s.risk_decision(2)

    version, none, allowed = store.run(read)
    assert version == migrations.LATEST
    assert none is None  # decided by nobody: no decision
    assert allowed is not None
    assert (allowed.outcome, allowed.score, allowed.model, allowed.decided_by) == (
        "allow",
        3,
        MODEL,
        "default",
    )
    assert allowed.reasons == (
        Reason("amount", 1999.0, 0.25),
        Reason("phone_buyers_24h", None, 0.1),
    )
    assert store.query("SELECT risk, risk_packed FROM orders WHERE id = 2") == [(JSON_RISK, None)]

    # A packed decision beside it (as a newer node writes) is read first.
    packed = msgspec.msgpack.encode(
        [9, bytes.fromhex(MODEL), 1, True, [], [[FEATURE_NAMES.index("amount"), 1999, 500_000]]]
    )
    store.query(f"UPDATE orders SET risk_packed = {store.blob(packed)} WHERE id = 2")
    _, _, again = store.run(read)
    assert again is not None
    assert (again.score, again.decided_by, again.three_ds, again.reasons) == (
        9,
        "score",
        True,
        (Reason("amount", 1999.0, 0.5),),
    )
