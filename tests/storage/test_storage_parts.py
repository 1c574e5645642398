"""The unit of work's parts (``pyorder.kernel.unit``) on both backends: a batch counts a
part's rows, a snapshot names an unloaded part's empty state, and a part that no registry
lists (``pyorder.parts``) is refused with nothing of its batch written."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyorder.catalog.model import Warehouse
from pyorder.kernel.unit import PartKind, Statement, Write
from pyorder.model import Snapshot, WriteBatch
from pyorder.returns.storage import RETURNS, StoredReturns
from pyorder.storage.base import StorageError, Store

from .backends import Backend


@dataclass(slots=True)
class _Notes:
    """A part of a capability that was never registered."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def writes(self) -> Iterator[Write]:
        yield Statement("SELECT ?", "SELECT $1"), self.rows


NOTES = PartKind("notes", _Notes, (), lambda rows: None)


def test_a_batch_counts_its_parts_and_a_snapshot_defaults_them() -> None:
    batch = WriteBatch()
    assert batch.part(RETURNS) is batch.part(RETURNS)
    assert len(batch) == 0
    batch.part(NOTES).rows.append((1,))
    assert len(batch) == 1
    snap = Snapshot([], {}, [], [], [], 0, 0)
    assert snap.part(RETURNS) == StoredReturns([], [])


def test_an_unregistered_part_is_refused_with_its_batch(store: Backend) -> None:
    async def body(s: Store) -> None:
        batch = WriteBatch(warehouses=[Warehouse(0, "w", "admin:root")])
        batch.part(NOTES).rows.append((1,))
        with pytest.raises(StorageError, match="notes"):
            await s.commit(batch)
        assert (await s.load()).warehouses == []

    store.run(body)
