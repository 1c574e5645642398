"""Logistics end to end: the real ``pyorder-server``, a real payment sandbox and a real carrier
sandbox process on loopback; the server ships with the carrier, the carrier posts its signed
tracking events to the server's webhook, and its ledger is the truth of what was booked."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyorder.kernel.signing import sign
from tests.payments.lib import SECRET as PAY_SECRET
from tests.payments.lib import Sandbox
from tests.server.e2e_lib import Response, Server, Shop, fresh_database
from tests.support.server import ROOT, ServerProcess, free_port

SECRET = "whsec_e2e_carrier"
CARRIER = "swift"


@dataclass
class CarrierBox:
    """One carrier sandbox process; a scan every ``interval_s`` real seconds."""

    name: str = CARRIER
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spec(self) -> str:
        return f"name={self.name},url={self.url},secret={SECRET}"

    def start(
        self, workdir: Path, webhook_url: str, interval_s: float, args: Sequence[str]
    ) -> None:
        """Start the process and wait until it answers ``/healthz``."""
        self.spawn(workdir, webhook_url, interval_s, args)
        self.wait_ready()

    def spawn(
        self, workdir: Path, webhook_url: str, interval_s: float, args: Sequence[str]
    ) -> None:
        """Start the process without waiting for it (``wait_ready`` does), so that its start
        overlaps the other processes' of a test."""
        cmd = [sys.executable, "-m", "sandbox.carrier.main", "--port", str(self.port)]
        cmd += ["--name", self.name, "--secret", SECRET, "--webhook-url", webhook_url]
        cmd += ["--event-interval-s", str(interval_s), "--time-scale", "1"]
        cmd += ["--webhook-backoff-ms", "50", "--webhook-max-backoff-ms", "200", *args]
        log = open(workdir / f"carrier-{self.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Wait (at most ``timeout_s``) until the spawned carrier answers ``/healthz``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"carrier {self.name} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def ledger(self) -> Any:
        with urllib.request.urlopen(self.url + "/_sandbox/ledger", timeout=5) as resp:
            return json.loads(resp.read())

    def shipments_for(self, order_id: str) -> list[Any]:
        return [s for s in self.ledger()["shipments"] if s["metadata"].get("order_id") == order_id]

    def webhooks_settled(self) -> bool:
        return not any(h["state"] == "pending" for h in self.ledger()["webhooks"])

    def faults(self, **patch: object) -> Any:
        req = urllib.request.Request(
            self.url + "/_sandbox/faults", data=json.dumps(patch).encode(), method="POST"
        )
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())


@dataclass
class ShipWorld:
    srv: Server
    shop: Shop
    carrier: CarrierBox
    region: str
    warehouses: list[int]
    sku: int
    merchant: str
    """The token of the merchant whose SKUs these are."""
    buyer: str
    card: Sandbox | None = None
    """The payment sandbox (its ledger is the truth of what was charged and refunded)."""

    def order(
        self, lines: Sequence[tuple[int, int]] | None = None, token: str | None = None
    ) -> str:
        resp = self.shop.order(token or self.buyer, lines or [(self.sku, 1)], self.region)
        assert resp.status == 201, resp
        return str(resp.json()["id"])

    def pay(self, order_id: str, token: str | None = None) -> None:
        resp = self.srv.call(
            "POST",
            f"/v1/orders/{order_id}/payments",
            token=token or self.buyer,
            json={"method": "card"},
            headers={"Idempotency-Key": f"pay-{order_id}"},
        )
        assert resp.status == 202, resp
        self.wait_order(order_id, "paid")

    def paid_order(self, lines: Sequence[tuple[int, int]] | None = None) -> str:
        oid = self.order(lines)
        self.pay(oid)
        return oid

    def wait_order(self, order_id: str, status: str, timeout_s: float = 10.0) -> None:
        self.shop.wait_for_status(order_id, status, timeout_s)

    def ship(self, order_id: str, token: str | None = None, key: str = "", **body: Any) -> Response:
        return self.srv.call(
            "POST",
            f"/v1/orders/{order_id}/shipments",
            token=token or self.merchant,
            json=body,
            headers={"Idempotency-Key": key or f"ship-{order_id}-{time.monotonic_ns()}"},
        )

    def tracking(self, order_id: str, token: str | None = None) -> Any:
        return self.srv.ok("GET", f"/v1/orders/{order_id}/shipments", token=token or self.buyer)

    def wait_fulfilment(self, order_id: str, status: str, timeout_s: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout_s
        seen: Any = None
        while time.monotonic() < deadline:
            seen = self.tracking(order_id)
            if seen["fulfilment_status"] == status:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"order {order_id}: not {status}: {seen}")

    def window(self, capacity: int, *, start_s: float = 0.5, length_s: float = 2.0) -> int:
        start = datetime.now(UTC) + timedelta(seconds=start_s)
        body = {
            "start": start.isoformat(),
            "end": (start + timedelta(seconds=length_s)).isoformat(),
            "capacity": capacity,
        }
        out = self.srv.ok(
            "POST",
            f"/v1/regions/{self.region}/delivery-windows",
            token=self.shop.admin,
            json=body,
            expect=201,
        )
        return int(out["id"])

    def pick(self, order_id: str, window: int, token: str | None = None) -> Response:
        return self.srv.call(
            "POST",
            f"/v1/orders/{order_id}/delivery-window",
            token=token or self.buyer,
            json={"window": window},
            headers={"Idempotency-Key": f"pick-{order_id}-{window}-{time.monotonic_ns()}"},
        )

    def webhook(self, event: dict[str, Any], *, header: str | None = None) -> Response:
        body = json.dumps(event).encode()
        return self.srv.call(
            "POST",
            f"/v1/webhooks/carriers/{self.carrier.name}",
            body=body,
            headers={
                "Content-Type": "application/json",
                "Provider-Signature": header if header is not None else sign(body, SECRET),
            },
        )

    def metric(self, name: str) -> float | None:
        resp = self.srv.call("GET", "/metrics", token=self.srv.admin())
        for line in resp.body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


@contextmanager
def ship_world(
    backend: str,
    workdir: Path,
    *,
    warehouses: int = 1,
    interval_s: float = 0.2,
    carrier_args: Sequence[str] = (),
    server_args: Sequence[str] = (),
) -> Iterator[ShipWorld]:
    """A server on ``backend`` with a card provider and the carrier sandbox; ``warehouses``
    serving one region, nearest first, and a SKU of 100 units at 999 in the first."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack, fresh_database(backend) as dsn:
        card = Sandbox("card1", "card")
        carrier = CarrierBox()
        args = ["--payment-provider", card.spec(0), "--carrier", carrier.spec(), *server_args]
        proc = ServerProcess(workdir / "data", database=dsn, args=tuple(args))
        # The three processes start together (a fresh server calls neither sandbox before a
        # test pays or ships), and all are ready before the world is handed out.
        card.spawn(workdir, f"{proc.url}/v1/webhooks/payments/card1", ())
        stack.callback(card.stop)
        carrier.spawn(
            workdir, f"{proc.url}/v1/webhooks/carriers/{carrier.name}", interval_s, carrier_args
        )
        stack.callback(carrier.stop)
        stack.callback(proc.stop)
        proc.spawn()
        card.wait_ready()
        carrier.wait_ready()
        proc.wait_ready()
        srv = Server(proc, backend)
        shop = Shop(srv)
        merchant = srv.token("merchant", "seller")
        region = "ship-north"
        whs = [shop.warehouse(f"wh-{i}") for i in range(warehouses)]
        shop.region(region, whs)
        sku = shop.sku({whs[0]: 100}, price=999, token=merchant)
        buyer = srv.token("buyer", "bob")
        yield ShipWorld(srv, shop, carrier, region, whs, sku, merchant, buyer, card)


def tracking_event(
    order_id: str, parcel: int, sequence: int, status: str, *, event_id: str, **extra: Any
) -> dict[str, Any]:
    """A carrier tracking event about parcel ``parcel`` of ``order_id`` (hand-made)."""
    obj = {
        "id": f"te_{event_id}",
        "object": "tracking_event",
        "shipment": extra.pop("shipment", ""),
        "tracking_number": "SWIF000000000000",
        "kind": "outbound",
        "reference": f"{order_id}-{parcel}",
        "sequence": sequence,
        "status": status,
        "occurred_at": datetime.now(UTC).isoformat(),
        "location": "hub",
        "details": {},
        **extra,
    }
    return {
        "id": event_id,
        "object": "event",
        "type": f"tracking.{status}",
        "created": int(time.time()),
        "provider": CARRIER,
        "data": {"object": obj},
    }


__all__ = ["PAY_SECRET", "SECRET", "CarrierBox", "ShipWorld", "ship_world", "tracking_event"]
