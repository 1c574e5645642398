"""A batch's orders refused out of stock, placed once more (on a cluster node, after its keeper
asked the pool for the units they need: ``pyorder.server.api.orders``).

Only on that slow path are the request and the answer parsed in Python; the batch itself was
placed and answered by the Rust core, with no Python object per order."""

from collections import Counter
from dataclasses import dataclass

import orjson

from pyorder.orders.service import Answer

OUT_OF_STOCK = "out_of_stock"


@dataclass(frozen=True, slots=True)
class Refused:
    """The orders of a batch answer refused out of stock: their indices in the batch, a batch
    body of just them, and the units per SKU they ask for."""

    indices: list[int]
    body: bytes
    wanted: Counter[int]

    def merge(self, first: Answer, again: Answer) -> Answer:
        """``first`` with the results of ``again`` (these orders placed once more) in their
        places, under their indices in the first batch, and its counts to match."""
        doc = orjson.loads(first.body)
        results = doc["results"]
        retried = orjson.loads(again.body)["results"]
        for index, item in zip(self.indices, retried, strict=True):
            results[index] = {**item, "index": index}
        created = sum(1 for item in results if item["status"] == 201)
        doc["created"], doc["failed"] = created, len(results) - created
        return Answer(
            first.status, orjson.dumps(doc), first.created + again.created, again.stockouts
        )


def refused(answer: bytes, request: bytes) -> Refused | None:
    """The orders of the batch ``request`` that its ``answer`` refused out of stock (None when
    none was)."""
    results = orjson.loads(answer)["results"]
    indices = [
        int(item["index"])
        for item in results
        if item["status"] == 409 and (item.get("error") or {}).get("code") == OUT_OF_STOCK
    ]
    if not indices:
        return None
    doc = orjson.loads(request)
    orders = [doc["orders"][i] for i in indices]
    wanted: Counter[int] = Counter()
    for order in orders:
        for line in order["lines"]:
            wanted[int(line["sku"])] += int(line["quantity"])
    return Refused(indices, orjson.dumps({**doc, "orders": orders}), wanted)
