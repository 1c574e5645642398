"""Locust users of the gateway-intake scenario (run by ``loadtest/scenario.py gateway``): an
upstream gateway forwards the orders it collected through the batch endpoint, ``FLASH_BATCH``
orders per request, spread over the catalogue (``FLASH_SKUS``, comma-separated) and regions.

Environment as for the flash sale (``FLASH_TOKENS``, ``FLASH_REGION``, ``FLASH_OUT``) plus
``FLASH_SKUS`` and ``FLASH_BATCH``. Each process appends ``order_id quantity`` of every created
order to ``created-<pid>.txt``.
"""

import os
import random
from pathlib import Path

import orjson
from locust import FastHttpUser, constant, task

TOKENS = Path(os.environ["FLASH_TOKENS"]).read_text().split()
SKUS = [int(s) for s in os.environ["FLASH_SKUS"].split(",")]
REGION = os.environ["FLASH_REGION"]
BATCH = int(os.environ["FLASH_BATCH"])
CREATED = Path(os.environ["FLASH_OUT"]) / f"created-{os.getpid()}.txt"


class Gateway(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.headers = {
            "Authorization": f"Bearer {random.choice(TOKENS)}",
            "Content-Type": "application/json",
        }

    @task
    def forward(self) -> None:
        orders = [
            {
                "lines": [{"sku": random.choice(SKUS), "quantity": random.randint(1, 3)}],
                "address": {"name": f"Buyer {i}", "line1": "1 Road", "city": "X", "region": REGION},
            }
            for i in range(BATCH)
        ]
        with self.client.post(
            "/v1/orders/batch",
            data=orjson.dumps({"orders": orders}).decode(),
            headers=self.headers,
            name=f"batch of {BATCH}",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            results = orjson.loads(resp.content)["results"]
        created = [
            f"{r['order']['id']} {r['order']['lines'][0]['quantity']}"
            for r in results
            if r["status"] == 201
        ]
        with CREATED.open("a") as out:
            out.write("".join(line + "\n" for line in created))
