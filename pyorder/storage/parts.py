"""The registered parts of a batch (``pyorder.parts``) as the stores write and load them."""

from collections.abc import Iterator

from pyorder.kernel.unit import Write
from pyorder.model import WriteBatch
from pyorder.parts import PARTS
from pyorder.storage.base import StorageError

_NAMES = frozenset(kind.name for kind in PARTS)


def writes(batch: WriteBatch) -> Iterator[Write]:
    """The statements of the batch's parts, in the registry's order (a part yields none without
    rows; events flag ``order.created`` with no row of their own, so every part is asked). A
    part no registry lists would not be written: refused (before anything runs, as the caller
    computes this list before it starts the transaction)."""
    unknown = batch.parts.keys() - _NAMES
    if unknown:
        raise StorageError(f"parts not registered in pyorder.parts: {sorted(unknown)}")
    for kind in PARTS:
        part = batch.parts.get(kind.name)
        if part is not None:
            yield from part.writes()
