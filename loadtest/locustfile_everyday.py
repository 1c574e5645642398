"""Locust users of the everyday-shopping scenario (run by ``loadtest/scenario.py everyday``,
which sets the environment): buyers browse a large catalogue, put one to three SKUs in an order,
then pay it (most), cancel it, or walk away and let it expire; a paid order is shipped by the
carrier sandbox, and some buyers return it once it is delivered.

Environment: ``FLASH_TOKENS`` (a file of buyer tokens, one per line), ``FLASH_SKUS`` (the SKU
ids, comma separated), ``FLASH_REGION``, ``FLASH_OUT`` (a folder: each process appends
``<order id> <fate>`` for every order it got 201 for to ``created-<pid>.txt``; ``fate`` is what
the buyer did: pay, cancel, abandon, and ``returned`` lines for returns opened), and
``EVERYDAY_RETURN_RATE`` (the share of delivered orders returned).
"""

import os
import random
from pathlib import Path

from locust import FastHttpUser, between, task

TOKENS = Path(os.environ["FLASH_TOKENS"]).read_text().split()
SKUS = [int(s) for s in os.environ["FLASH_SKUS"].split(",")]
REGION = os.environ["FLASH_REGION"]
CREATED = Path(os.environ["FLASH_OUT"]) / f"created-{os.getpid()}.txt"
RETURN_RATE = float(os.environ.get("EVERYDAY_RETURN_RATE", "0.3"))
FATES = ("pay",) * 14 + ("cancel",) * 3 + ("abandon",) * 3
"""Of 20 orders: 14 paid, 3 cancelled, 3 left to expire."""
METHODS = ("card", "card", "wallet", "bank_transfer")


def record(order_id: str, what: str) -> None:
    with CREATED.open("a") as out:
        out.write(f"{order_id} {what}\n")


class EverydayShopper(FastHttpUser):
    """One buyer: browses (most requests), sometimes orders, watches its paid orders arrive."""

    wait_time = between(0.2, 0.8)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {random.choice(TOKENS)}"}
        self.paid: list[str] = []
        """Paid orders not yet seen delivered."""

    @task(6)
    def browse(self) -> None:
        after = random.choice(SKUS) - 1
        self.client.get(
            f"/v1/skus?limit=20&after={max(after, 0)}", headers=self.headers, name="browse"
        )
        self.client.get(f"/v1/skus/{random.choice(SKUS)}", headers=self.headers, name="sku")

    @task(3)
    def buy(self) -> None:
        skus = random.sample(SKUS, random.choice((1, 1, 2, 3)))
        body = {
            "lines": [{"sku": s, "quantity": random.choice((1, 1, 2))} for s in skus],
            "address": {
                "name": "Everyday Buyer",
                "line1": "2 Main St",
                "city": "Y",
                "region": REGION,
            },
        }
        with self.client.post(
            "/v1/orders", json=body, headers=self.headers, name="order", catch_response=True
        ) as resp:
            if resp.status_code == 409:
                resp.success()  # a SKU ran out: the buyer moves on
                return
            if resp.status_code != 201:
                resp.failure(f"HTTP {resp.status_code}")
                return
            order_id = resp.json()["id"]
        fate = random.choice(FATES)
        if fate == "pay":
            ok = self._post(f"/v1/orders/{order_id}/payments", {"method": random.choice(METHODS)})
            if ok:
                self.paid.append(order_id)
            record(order_id, "pay" if ok else "pay-failed")
        elif fate == "cancel":
            record(order_id, "cancel" if self._post(f"/v1/orders/{order_id}/cancel", {}) else "?")
        else:
            record(order_id, "abandon")

    @task(2)
    def track(self) -> None:
        """Look at the oldest paid order's parcels; once delivered, maybe return it."""
        if not self.paid:
            return
        order_id = self.paid[0]
        with self.client.get(
            f"/v1/orders/{order_id}/shipments", headers=self.headers, name="shipments"
        ) as resp:
            if resp.status_code != 200 or resp.json()["fulfilment_status"] != "delivered":
                return
        self.paid.pop(0)
        if random.random() < RETURN_RATE and self._return(order_id):
            record(order_id, "returned")

    def _return(self, order_id: str) -> bool:
        """Open a no-reason return of the whole order (only if the server offers returns)."""
        with self.client.get(
            f"/v1/orders/{order_id}", headers=self.headers, name="read order"
        ) as r:
            if r.status_code != 200:
                return False
            lines = [{"sku": li["sku"], "quantity": li["quantity"]} for li in r.json()["lines"]]
        body = {"lines": lines, "reason": "changed my mind"}
        return self._post(f"/v1/orders/{order_id}/returns", body, name="return")

    def _post(self, path: str, body: object, name: str | None = None) -> bool:
        name = name or path.rsplit("/", 1)[-1]
        with self.client.post(
            path, json=body, headers=self.headers, name=name, catch_response=True
        ) as resp:
            if resp.status_code >= 300:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return False
            return True
