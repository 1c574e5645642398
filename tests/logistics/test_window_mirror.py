"""A cluster node's copy of the delivery windows (``pyorder.cluster.windows.WindowMirror``),
against a store that counts its reads: read at most once per ``max_age_s``, one read shared by
the callers meanwhile, and a window this node changed after a read began kept as it is."""

import asyncio
from typing import cast

from pyorder.cluster.windows import WindowMirror
from pyorder.logistics.model import DeliveryWindow
from pyorder.storage.base import Store


def _window(wid: int, booked: int) -> DeliveryWindow:
    return DeliveryWindow(wid, "north", 1_000, 2_000, 10, booked, 1)


class _Store:
    """The store's windows as another node left them; each read takes ``delay_s``."""

    def __init__(self, rows: list[DeliveryWindow], delay_s: float = 0.0) -> None:
        self.rows = rows
        self.delay_s = delay_s
        self.reads = 0

    async def delivery_windows(self, ending_after_ms: int) -> list[DeliveryWindow]:
        self.reads += 1
        rows = list(self.rows)
        await asyncio.sleep(self.delay_s)
        return rows


def test_reads_are_shared_and_at_most_once_per_max_age() -> None:
    async def body() -> None:
        store = _Store([_window(1, 3)], delay_s=0.05)
        held: dict[int, DeliveryWindow] = {}
        mirror = WindowMirror(cast(Store, store), lambda: held, max_age_s=0.2)
        await asyncio.gather(*(mirror.fresh() for _ in range(5)))
        assert (store.reads, held) == (1, {1: _window(1, 3)})
        store.rows = [_window(1, 4), _window(2, 0)]
        await mirror.fresh()  # younger than max_age_s: the copy as it is
        assert (store.reads, held) == (1, {1: _window(1, 3)})
        await asyncio.sleep(0.2)
        await mirror.fresh()
        assert (store.reads, held) == (2, {1: _window(1, 4), 2: _window(2, 0)})

    asyncio.run(body())


def test_a_window_changed_here_after_a_read_began_is_kept() -> None:
    async def body() -> None:
        store = _Store([_window(1, 3), _window(2, 5)], delay_s=0.05)
        held: dict[int, DeliveryWindow] = {}
        mirror = WindowMirror(cast(Store, store), lambda: held, max_age_s=0.0)
        reading = asyncio.ensure_future(mirror.fresh())
        await asyncio.sleep(0.01)  # the read has begun
        held[1] = _window(1, 4)  # a booking here answered meanwhile
        mirror.changed(1)
        await reading
        assert held == {1: _window(1, 4), 2: _window(2, 5)}
        await mirror.fresh()  # a read begun after the change replaces it
        assert held == {1: _window(1, 3), 2: _window(2, 5)}

    asyncio.run(body())
