"""Cluster tests' set-up: a catalogue made by a node in solo mode before the cluster starts,
and two cluster platforms in process on one database."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def two_nodes(
    dsn: str, tmp_path: Path, payment_timeout_ms: int = 15 * 60 * 1000
) -> AsyncIterator[tuple[Platform, Platform]]:
    """Two cluster platforms on ``dsn`` (data in ``tmp_path / "a"`` and ``"b"``), started in
    turn and stopped in reverse."""
    nodes = [
        Platform(
            Config(
                data_dir=tmp_path / name,
                database=dsn,
                cluster=True,
                payment_timeout_ms=payment_timeout_ms,
            )
        )
        for name in ("a", "b")
    ]
    await nodes[0].start()
    try:
        await nodes[1].start()
        try:
            yield nodes[0], nodes[1]
        finally:
            await nodes[1].stop()
    finally:
        await nodes[0].stop()
