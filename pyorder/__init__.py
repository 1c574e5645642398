"""pyorder: an order-intake platform with a Rust hot path.

The embedded API lives in submodules named after what they do: ``pyorder.inventory``
(sharded stock reservation across warehouses) and ``pyorder.ids`` (order IDs).
"""

# The core first: importing it configures SQLite for the process (``_core.SQLITE_TUNED``),
# which only works before anything initialises SQLite, and importing ``sqlite3`` does.
from pyorder import _core  # noqa: F401

__version__ = "0.1.0"

__all__ = ["__version__"]
