"""The locust baseline of a scenario (``loadtest/scenario.py ... --baseline``): the same users,
pacing and request bodies as the scenario's main request, sent to ``loadtest/bare_server.py``
(aiohttp + uvloop + orjson, parses the body, no logic): what locust and HTTP alone reach on this
machine, to compare the server's figures with.

Environment: ``FLASH_BATCH`` (0: single orders paced like the flash sale's clicks; N: batches of
N orders sent back to back like the gateway's).
"""

import os
import random

import orjson
from locust import FastHttpUser, constant, constant_pacing, task

BATCH = int(os.environ.get("FLASH_BATCH", "0"))


def order(i: int) -> dict[str, object]:
    return {
        "lines": [{"sku": random.randrange(16), "quantity": random.choice((1, 1, 2))}],
        "address": {"name": f"Buyer {i}", "line1": "1 Road", "city": "X", "region": "r"},
    }


class SingleOrders(FastHttpUser):
    """Like the flash sale's buyers: a click every 50 ms."""

    wait_time = constant_pacing(0.05)
    weight = 0 if BATCH else 1

    @task
    def buy(self) -> None:
        self.client.post("/v1/orders", json=order(0), name="order")


class Batches(FastHttpUser):
    """Like the gateway: batches back to back."""

    wait_time = constant(0)
    weight = 1 if BATCH else 0

    @task
    def forward(self) -> None:
        body = orjson.dumps({"orders": [order(i) for i in range(BATCH)]}).decode()
        headers = {"Content-Type": "application/json"}
        self.client.post("/v1/orders/batch", data=body, headers=headers, name=f"batch of {BATCH}")
