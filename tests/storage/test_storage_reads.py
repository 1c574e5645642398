"""Reads: order lists (buyer, merchant, all) newest first with a before_id cursor and no
duplicates; SKU lists; stock; idempotency records and their purge."""

from collections.abc import Awaitable, Callable

from pyorder.model import WriteBatch
from pyorder.orders.model import Order, OrderLine
from pyorder.storage.base import Store

from .backends import Backend
from .records import MERCHANTS, catalog, idem, line, order

ALPHA, BETA = MERCHANTS  # SKUs 0 and 2 are alpha's, 1 and 3 beta's


def orders_fixture() -> list[Order]:
    """60 orders: buyers alternate; every third order has two alpha lines (a duplicate risk for
    a merchant list), others one line of alpha or of beta."""
    out = []
    for i in range(1, 61):
        buyer = "buyer-a" if i % 2 else "buyer-b"
        lines: tuple[OrderLine, ...]
        if i % 3 == 0:
            lines = (line(0), line(2, 2))
        elif i % 3 == 1:
            lines = (line(1), line(0))
        else:
            lines = (line(3),)
        out.append(order(1000 + i, *lines, buyer=buyer))
    return out


async def pages(
    fetch: Callable[[int | None], Awaitable[list[Order]]], page_size: int
) -> list[list[Order]]:
    """Follow the before_id cursor until a short page."""
    out: list[list[Order]] = []
    cursor: int | None = None
    while True:
        page = await fetch(cursor)
        out.append(page)
        if len(page) < page_size:
            return out
        cursor = page[-1].id


def test_list_orders_paginates_newest_first_without_duplicates(store: Backend) -> None:
    everything = orders_fixture()

    def expect(keep: Callable[[Order], bool]) -> list[Order]:
        return sorted((o for o in everything if keep(o)), key=lambda o: -o.id)

    async def body(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(WriteBatch(orders=everything[:30]))
        await s.commit(WriteBatch(orders=everything[30:]))

        cases: list[tuple[dict[str, str], Callable[[Order], bool]]] = [
            ({"buyer": "buyer-a"}, lambda o: o.buyer == "buyer-a"),
            ({"merchant": ALPHA}, lambda o: any(ln.merchant == ALPHA for ln in o.lines)),
            ({"merchant": BETA}, lambda o: any(ln.merchant == BETA for ln in o.lines)),
            (
                {"buyer": "buyer-b", "merchant": BETA},
                lambda o: o.buyer == "buyer-b" and any(ln.merchant == BETA for ln in o.lines),
            ),
            ({}, lambda o: True),
        ]
        for filters, keep in cases:
            for size in (7, 10):

                def fetch(
                    cursor: int | None, f: dict[str, str] = filters, n: int = size
                ) -> Awaitable[list[Order]]:
                    return s.list_orders(**f, before_id=cursor, limit=n)

                got = await pages(fetch, size)
                assert all(len(p) == size for p in got[:-1]), filters
                flat = [o for p in got for o in p]
                assert flat == expect(keep), (filters, size)

        assert await s.list_orders(buyer="nobody") == []
        assert await s.list_orders(merchant="nobody") == []
        assert await s.list_orders(limit=0) == []
        assert [o.id for o in await s.list_orders(before_id=1003, limit=5)] == [1002, 1001]

    store.run(body)


def test_list_skus_ascending_by_merchant_and_cursor(store: Backend) -> None:
    async def body(s: Store) -> None:
        cat = catalog(n_skus=9)
        await s.commit(cat)
        assert await s.list_skus() == cat.skus
        assert await s.list_skus(after_id=6) == cat.skus[7:]
        assert await s.list_skus(limit=3) == cat.skus[:3]
        alpha = [k for k in cat.skus if k.merchant == ALPHA]
        assert await s.list_skus(merchant=ALPHA) == alpha
        assert await s.list_skus(merchant=ALPHA, after_id=alpha[1].id, limit=2) == alpha[2:4]
        assert await s.list_skus(merchant="nobody") == []

    store.run(body)


def test_idempotency_records_are_found_and_purged_by_age(store: Backend) -> None:
    async def body(s: Store) -> None:
        records = [idem(f"k{i}", created_ms=1_000 * i) for i in range(1, 6)]
        records.append(idem("k1", created_ms=1_000, principal="buyer-2"))
        await s.commit(WriteBatch(idempotency=records))
        for r in records:
            assert await s.get_idempotency(r.principal, r.key) == r

        assert await s.purge_idempotency(older_than_ms=3_000) == 3  # k1, k2, and buyer-2's k1
        assert await s.get_idempotency("buyer-1", "k1") is None
        assert await s.get_idempotency("buyer-2", "k1") is None
        assert await s.get_idempotency("buyer-1", "k2") is None
        assert await s.get_idempotency("buyer-1", "k3") == records[2]
        assert await s.purge_idempotency(older_than_ms=3_000) == 0

    store.run(body)
