"""The registry of the unit of work's parts (``pyorder.kernel.unit``): the stores write each
part listed here, in this order, inside a batch's transaction, and load each at start.

A new capability with its own tables adds its ``PartKind`` here: one line.
"""

from typing import Any

from pyorder.kernel.unit import PartKind
from pyorder.returns.storage import RETURNS

PARTS: tuple[PartKind[Any, Any], ...] = (RETURNS,)
