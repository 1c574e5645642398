"""pyorder: an order-intake platform with a Rust hot path.

The embedded API lives in submodules named after what they do: ``pyorder.inventory``
(sharded stock reservation across warehouses) and ``pyorder.ids`` (order IDs).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
