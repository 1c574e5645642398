"""Payments end to end: the real ``pyorder-server`` and real payment sandbox processes on
loopback, the server configured with the sandboxes as providers and each sandbox posting its
signed events to the server's webhook."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyorder.kernel.signing import sign
from tests.server.e2e_lib import Server, Shop, address, fresh_database
from tests.support.server import ROOT, ServerProcess, free_port

SECRET = "whsec_e2e_payments"


@dataclass
class Sandbox:
    """One payment sandbox process."""

    name: str
    methods: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spec(self, priority: int) -> str:
        methods = self.methods.replace(",", "+")
        return (
            f"name={self.name},url={self.url},secret={SECRET},methods={methods},priority={priority}"
        )

    def start(self, workdir: Path, webhook_url: str | None, args: Sequence[str]) -> None:
        """Start the process and wait until it answers ``/healthz``."""
        self.spawn(workdir, webhook_url, args)
        self.wait_ready()

    def spawn(self, workdir: Path, webhook_url: str | None, args: Sequence[str]) -> None:
        """Start the process without waiting for it (``wait_ready`` does), so that its start
        overlaps the other processes' of a test."""
        cmd = [sys.executable, "-m", "sandbox.payment.main", "--port", str(self.port)]
        cmd += ["--name", self.name, "--secret", SECRET, "--methods", self.methods]
        cmd += ["--webhook-backoff-ms", "50", "--webhook-max-backoff-ms", "200"]
        cmd += ["--refund-settle-ms", "0", *args]
        if webhook_url:
            cmd += ["--webhook-url", webhook_url]
        log = open(workdir / f"sandbox-{self.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Wait (at most ``timeout_s``) until the spawned sandbox answers ``/healthz``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"sandbox {self.name} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def admin(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def ledger(self) -> Any:
        return self.admin("GET", "/_sandbox/ledger")

    def charges_for(self, order_id: str) -> list[Any]:
        return [c for c in self.ledger()["charges"] if c["metadata"].get("order_id") == order_id]

    def refunds(self) -> list[Any]:
        return list(self.ledger()["refunds"])

    def faults(self, **patch: object) -> Any:
        return self.admin("POST", "/_sandbox/faults", patch)


@dataclass
class PayWorld:
    srv: Server
    shop: Shop
    sandboxes: dict[str, Sandbox]
    region: str
    sku: int
    buyer: str
    """A buyer's token."""

    def order(self, quantity: int = 1, token: str | None = None) -> str:
        resp = self.shop.order(token or self.buyer, [(self.sku, quantity)], self.region)
        assert resp.status == 201, resp
        return str(resp.json()["id"])

    def pay(
        self, order_id: str, method: str = "card", token: str | None = None, **extra: str
    ) -> Any:
        return self.srv.call(
            "POST",
            f"/v1/orders/{order_id}/payments",
            token=token or self.buyer,
            json={"method": method, **extra},
            headers={"Idempotency-Key": f"pay-{order_id}-{time.monotonic_ns()}"},
        )

    def payment(self, order_id: str) -> Any:
        return self.srv.ok("GET", f"/v1/orders/{order_id}/payment", token=self.buyer)

    def status(self, order_id: str) -> str:
        return str(self.shop.get_order(order_id)["status"])

    def wait(self, order_id: str, *, order: str, payment: str, timeout_s: float = 10.0) -> Any:
        """Wait until the order and its payment are in these statuses; returns the payment."""
        deadline = time.monotonic() + timeout_s
        seen: tuple[str, str] = ("", "")
        while time.monotonic() < deadline:
            pay = self.payment(order_id)
            seen = (self.status(order_id), pay["status"])
            if seen == (order, payment):
                return pay
            time.sleep(0.05)
        raise AssertionError(f"order {order_id}: {seen}, not {(order, payment)}; {pay}")

    def webhook(self, provider: str, event: dict[str, Any], *, header: str | None = None) -> Any:
        body = json.dumps(event).encode()
        return self.srv.call(
            "POST",
            f"/v1/webhooks/payments/{provider}",
            body=body,
            headers={
                "Content-Type": "application/json",
                "Provider-Signature": header if header is not None else sign(body, SECRET),
            },
        )


@contextmanager
def pay_world(
    backend: str,
    workdir: Path,
    providers: Sequence[tuple[str, str, Sequence[str]]],
    *,
    server_args: Sequence[str] = (),
    webhooks: bool = True,
) -> Iterator[PayWorld]:
    """A server on ``backend`` with the sandboxes ``(name, methods, sandbox args)`` as its
    providers (in priority order), a warehouse, a region and a SKU of 100 units at 999."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack, fresh_database(backend) as dsn:
        boxes = {name: Sandbox(name, methods) for name, methods, _ in providers}
        args = [
            a for i, box in enumerate(boxes.values()) for a in ("--payment-provider", box.spec(i))
        ]
        args += ["--reconcile-interval-s", "0.3", "--breaker-cooldown-s", "1", *server_args]
        proc = ServerProcess(workdir / "data", database=dsn, args=tuple(args))
        # The processes start together (a fresh server calls no provider before a test pays),
        # and all are ready before the world is handed out.
        for name, _methods, extra in providers:
            hook = f"{proc.url}/v1/webhooks/payments/{name}" if webhooks else None
            boxes[name].spawn(workdir, hook, extra)
            stack.callback(boxes[name].stop)
        stack.callback(proc.stop)
        proc.spawn()
        for box in boxes.values():
            box.wait_ready()
        proc.wait_ready()
        srv = Server(proc, backend)
        shop = Shop(srv)
        region = "pay-north"
        wh = shop.warehouse("pay-a", regions=[region])
        sku = shop.sku({wh: 100}, price=999)
        yield PayWorld(srv, shop, boxes, region, sku, srv.token("buyer", "payer"))


def intent_event(
    order_id: str, attempt: int, status: str, *, event_id: str, amount: int = 999, **extra: Any
) -> dict[str, Any]:
    """A provider event about a PaymentIntent of ``order_id``'s attempt (for hand-made
    deliveries)."""
    intent = {
        "id": extra.pop("pi", "pi_handmade"),
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": "CNY",
        "status": status,
        "metadata": {"order_id": order_id, "attempt": str(attempt)},
        "last_payment_error": None,
        **extra,
    }
    return {
        "id": event_id,
        "object": "event",
        "type": f"payment_intent.{status}",
        "created": int(time.time()),
        "data": {"object": intent},
    }


__all__ = ["SECRET", "PayWorld", "Sandbox", "address", "intent_event", "pay_world"]
