"""Cluster tests' set-up: a catalogue made by a node in solo mode before the cluster starts."""

from pathlib import Path

from pyorder import Config, Platform, Principal, Role

MERCHANT = Principal(Role.MERCHANT, "acme")


async def solo_catalogue(dsn: str, tmp: Path, units: int, limit_per_buyer: int = 0) -> int:
    """A warehouse serving region "north" and one SKU with ``units`` in it (and a purchase
    limit per buyer, 0: none), made by a solo node on ``dsn`` (data in ``tmp / "solo"``),
    which then stops; returns the SKU id."""
    solo = Platform(Config(data_dir=tmp / "solo", database=dsn))
    await solo.start()
    wh = solo.catalog.create_warehouse(MERCHANT, "west", regions=["north"])
    sku = solo.catalog.create_sku(
        MERCHANT,
        title="phone",
        price=99_900,
        currency="CNY",
        stock={wh.id: units},
        limit_per_buyer=limit_per_buyer,
    ).sku
    await solo.intake.durable()
    await solo.stop()
    return sku.id
