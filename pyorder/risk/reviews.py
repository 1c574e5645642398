"""Reading the review queue and the risk decisions of orders (``docs/risk.md``, "Review
queue"): who may see what. Reviewing itself changes the order (``Orders.approve``,
``Orders.reject``).

An admin sees every decision and the whole queue; a merchant those of the orders it reviews
(the decision's merchant: that of the order's first line, whose rules decided it), another
merchant's being 404; buyers nothing (403), so that the reasons of a decision never reach
the buyer it is about.
"""

from pyorder.auth import Principal, Role
from pyorder.kernel.errors import NotFound
from pyorder.risk.records import Decision, Label
from pyorder.storage.base import Store


class Reviews:
    """The committed decisions and the open review queue, through ``store``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def queue(self, who: Principal, before_id: int | None, limit: int) -> list[Decision]:
        """The open reviews the caller may decide, newest first, with an id below
        ``before_id``: every one for an admin, a merchant's own."""
        who.require(Role.MERCHANT, Role.ADMIN)
        merchant = "" if who.role is Role.ADMIN else who.key
        return await self._store.open_reviews(merchant, before_id, limit)

    async def decision(self, who: Principal, order_id: int) -> Decision:
        """The risk decision of an order, with its review: for an admin, or its merchant."""
        who.require(Role.MERCHANT, Role.ADMIN)
        found = await self._store.risk_decision(order_id)
        if found is None or (who.role is not Role.ADMIN and found.merchant != who.key):
            raise NotFound(f"order {order_id} has no risk decision")
        return found

    async def labels(self, after_id: int = 0, page: int = 1000) -> list[Label]:
        """Every reviewed decision after ``after_id`` as a label, by id: 1 for a rejected order
        (or an approved one reported as fraud since), 0 for an approved one, with its features. What training learns from reviews
        (``python -m pyorder.risk.labels``); read page by page of ``page`` (at most the store's
        page size)."""
        found: list[Label] = []
        while True:
            got = await self._store.review_labels(after_id, page)
            found += got
            if len(got) < page:
                return found
            after_id = got[-1][0]
