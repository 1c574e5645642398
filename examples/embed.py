"""Embedding pyorder in Python: the platform in this process, no HTTP server.

A ``Platform`` on a temporary directory (SQLite; ``--database postgresql://...`` for
PostgreSQL): a warehouse serving a region, a SKU with stock, two orders placed, one refused for
want of stock, one cancelled, each step durable before it is reported. Run it from the
repository (``python examples/embed.py``); ``tests/test_embedding.py`` runs it on both stores.
"""

import argparse
import asyncio
import tempfile
from pathlib import Path

from pyorder import (
    Address,
    Config,
    OrderInput,
    OutOfStock,
    Platform,
    Principal,
    Role,
)

MERCHANT = Principal(Role.MERCHANT, "acme")
BUYER = Principal(Role.BUYER, "alice")
HOME = Address(name="Alice", line1="1 Road", city="Shanghai", region="north")


async def run(config: Config) -> None:
    platform = Platform(config)
    await platform.start()  # opens (and migrates) the store, rebuilds the engine from it
    try:
        catalog = platform.catalog
        warehouse = catalog.create_warehouse(MERCHANT, "west", regions=["north"])
        sku = catalog.create_sku(
            MERCHANT, title="phone", price=99_900, currency="CNY", stock={warehouse.id: 3}
        ).sku  # price in minor units (fen)
        await platform.intake.durable()

        # Placing is one synchronous call: checked, priced, reserved and staged in the Rust
        # core. It is durable once the commit it joined is; acknowledge it only then.
        kept = platform.orders.place(BUYER, OrderInput([(sku.id, 2)], HOME))
        other = platform.orders.place(BUYER, OrderInput([(sku.id, 1)], HOME))
        await platform.intake.durable()
        print(f"placed {kept.id}: {kept.total} {kept.currency}, pay by {kept.deadline_ms} ms")

        try:
            platform.orders.place(BUYER, OrderInput([(sku.id, 1)], HOME))
        except OutOfStock as refused:  # a DomainError: the HTTP API's code and details
            print(f"refused: {refused.code} {refused.details}")

        # Paying is ``await platform.payments.start(BUYER, kept.id, "card", None)``: it stages
        # the charge, and the provider of ``Config.payments`` is called once that is durable.
        cancelled = await platform.orders.cancel(BUYER, other.id)  # its unit returns
        await platform.intake.durable()
        stored = await platform.orders.get(BUYER, kept.id)
        level = platform.engine.inventory.stock(sku.id)
        print(f"order {stored.id} is {stored.status}, order {cancelled.id} {cancelled.status}")
        print(f"stock: {level.available} available, {level.reserved} reserved")
    finally:
        await platform.stop()  # flushes what is staged, then closes the store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="default: a temporary directory")
    parser.add_argument("--database", help="postgresql://... (default: SQLite in --data-dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyorder-embed-") as tmp:
        config = Config(data_dir=args.data_dir or Path(tmp), database=args.database)
        asyncio.run(run(config))


if __name__ == "__main__":
    main()
