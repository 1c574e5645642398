"""Locust users of the flash-sale scenario (run by ``loadtest/flash_sale.py``, which sets the
environment): thousands of buyers click "buy" on one hot SKU with little stock and a per-buyer
limit; most are refused (409: out of stock or over the limit), the rest pay by card.

Environment: ``FLASH_TOKENS`` (a file of buyer tokens, one per line), ``FLASH_SKU``,
``FLASH_REGION``, ``FLASH_OUT`` (a folder: each process appends the ids of the orders it got
201 for to ``created-<pid>.txt``, for the correctness check).
"""

import os
import random
from pathlib import Path

from locust import FastHttpUser, constant_pacing, task

TOKENS = Path(os.environ["FLASH_TOKENS"]).read_text().split()
SKU = int(os.environ["FLASH_SKU"])
REGION = os.environ["FLASH_REGION"]
CREATED = Path(os.environ["FLASH_OUT"]) / f"created-{os.getpid()}.txt"


class FlashSaleBuyer(FastHttpUser):
    """A buyer who keeps clicking "buy" (one or two units) until the sale has nothing left."""

    wait_time = constant_pacing(0.05)

    def on_start(self) -> None:
        self.token = random.choice(TOKENS)
        self.headers = {"Authorization": f"Bearer {self.token}"}

    @task
    def buy(self) -> None:
        body = {
            "lines": [{"sku": SKU, "quantity": random.choice((1, 1, 2))}],
            "address": {"name": "Flash Buyer", "line1": "1 Sale St", "city": "X", "region": REGION},
        }
        with self.client.post(
            "/v1/orders", json=body, headers=self.headers, name="order", catch_response=True
        ) as resp:
            if resp.status_code == 409:
                # Sold out or over the buyer's limit: the answer a flash sale gives most buyers.
                resp.success()
                return
            if resp.status_code != 201:
                resp.failure(f"HTTP {resp.status_code}")
                return
            order_id = resp.json()["id"]
        with CREATED.open("a") as out:
            out.write(f"{order_id}\n")
        self.client.post(
            f"/v1/orders/{order_id}/payments",
            json={"method": "card"},
            headers=self.headers,
            name="pay",
        )
