"""What ending an order needs of its neighbours, as small protocols: ``Orders.connect`` takes
them, and the bootstrap (``pyorder.platform``) passes logistics and payments' refunds, which
are built after orders since they read orders."""

from collections.abc import Iterable
from typing import Protocol

from pyorder.logistics.model import Shipment


class Shipping(Protocol):
    """What ending an order needs of logistics (``pyorder.logistics.service.Logistics``)."""

    def shipments_of(self, order_id: int) -> Iterable[Shipment]:
        """The order's parcels."""
        ...

    def release_window(self, order_id: int) -> None:
        """Give back the delivery-window slot the order booked, if any (it will not ship)."""
        ...


class Refunding(Protocol):
    """What cancelling a paid order needs of payments (``pyorder.payments.refunds.Refunds``)."""

    def refundable(self, order_id: int) -> int:
        """What of the order's charge can still be refunded (minor units)."""
        ...

    def issue(self, order_id: int, amount: int, reason: str, requested_by: str) -> object:
        """Stage a refund of ``amount`` minor units of the order's charge."""
        ...
