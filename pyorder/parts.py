"""The registry of the unit of work's parts (``pyorder.kernel.unit``): the stores write each
part listed here, in this order, inside a batch's transaction, and load each at start.

A new capability with its own tables adds its ``PartKind`` here: one line. The order is the
write order the batch has always had (``tests/storage/test_storage_write_order.py`` pins it):
payments (and attempts), the shared outbox and webhook events, refunds, logistics, returns, then
events, since an event's fan-out reads the order lines and endpoints written before it; then
the limit claims of the batch's orders (cluster nodes only), which read nothing the others write;
then the risk rules, lists and their audit entries, which touch no order; then the reviews of
risk decisions (with an approved order's new payment deadline), after the status changes of
their batch, which every store writes before the parts; last the fraud reports, which touch
nothing the others read.
"""

from typing import Any

from pyorder.events.storage import EVENTS
from pyorder.kernel.unit import PartKind
from pyorder.logistics.storage import LOGISTICS
from pyorder.payments.storage import PAYMENTS, REFUNDS
from pyorder.returns.storage import RETURNS
from pyorder.risk.decisions import REVIEWS
from pyorder.risk.fraud import FRAUD
from pyorder.risk.storage import RISK
from pyorder.storage.limit_claims import LIMIT_CLAIMS
from pyorder.storage.outbox import OUTBOX

PARTS: tuple[PartKind[Any, Any], ...] = (
    PAYMENTS,
    OUTBOX,
    REFUNDS,
    LOGISTICS,
    RETURNS,
    EVENTS,
    LIMIT_CLAIMS,
    RISK,
    REVIEWS,
    FRAUD,
)
