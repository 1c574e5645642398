"""Signed provider webhooks whose values no store could hold, of the wrong type, nested 1,000
deep, with U+0000, lone surrogates or huge strings: each is refused 400 ``invalid_event`` (a
JSON error, never a 500) before anything is staged, and orders placed by other buyers in the
same moment are all created and stored (no failed group commit, no 503). Answers of a provider
that are malformed are no answer: the attempt fails over, and nothing crashes."""

import json
import time
from pathlib import Path
from typing import Any

import pytest

from pyorder.kernel.signing import sign
from tests.server.e2e_lib import Call, order_body
from tests.support.postgres import postgres_dsn

from .lib import SECRET, PayWorld, intent_event, pay_world

CARD = ("card1", "card", ())


def _nested(depth: int) -> str:
    """A marker for ``_deepen``: an array nested ``depth`` deep (json.dumps would recurse)."""
    return f"@nested-{depth}@"


def _deepen(body: bytes) -> bytes:
    for depth in (50, 1000, 5000):
        body = body.replace(f'"@nested-{depth}@"'.encode(), b"[" * depth + b"]" * depth)
    return body


def _card(fingerprint: object) -> dict[str, Any]:
    """``payment_method_details`` of a card with this fingerprint."""
    return {"type": "card", "card": {"fingerprint": fingerprint}}


def bad_events(order_id: str) -> list[tuple[str, bytes]]:
    """(what is wrong, body) of provider events about the order's first attempt."""

    def intent(name: str, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
        event = intent_event(order_id, 1, "succeeded", event_id=f"evt_{name}", **extra)
        event["data"]["object"]["status"] = status
        return event

    cases: list[tuple[str, dict[str, Any]]] = [
        ("amount_2_63", intent("a63", amount_received=2**63)),
        ("amount_2_64", intent("a64", amount_received=2**64)),
        ("amount_1e308", intent("afloat", amount_received=1e308)),
        ("amount_float", intent("afloat2", amount_received=999.0)),
        ("amount_negative", intent("aneg", amount_received=-1)),
        ("amount_text", intent("atext", amount_received="abc")),
        ("amount_object", intent("aobj", amount_received={"value": 999})),
        ("status_unknown", intent("status", status="exploded")),
        ("currency_nul", intent("cur", currency="CN\u0000")),
        ("metadata_nul", intent("meta", metadata={"order_id": order_id + "\u0000", "a": "1"})),
        ("id_nul", intent("idnul", pi="pi_\u0000")),
        ("id_path", intent("idpath", pi="../../v1/refunds")),
        ("huge_string", intent("huge", description="x" * 300_000)),
        ("huge_metadata", intent("bigmeta", metadata={"order_id": "1" * 600})),
        ("fingerprint_path", intent("fppath", payment_method_details=_card("../../x"))),
        ("fingerprint_number", intent("fpint", payment_method_details=_card(2**64))),
    ]
    deep_event = intent("deep")
    deep_event["id"] = _nested(1000)
    deep_object = intent("deepobj")
    deep_object["data"]["object"]["id"] = _nested(1000)
    deep_unknown = intent("deepunknown")
    deep_unknown["data"]["object"]["extra"] = _nested(5000)
    not_object = intent("notobj")
    not_object["data"]["object"] = [1, 2]
    cases += [
        ("id_nested_1000", deep_event),
        ("object_id_nested_1000", deep_object),
        ("unknown_field_nested_5000", deep_unknown),
        ("object_not_an_object", not_object),
    ]
    out = [(name, _deepen(json.dumps(event).encode())) for name, event in cases]
    # Escapes json.dumps would not write: a lone surrogate, and invalid UTF-8.
    lone = json.dumps(intent("lone")).encode().replace(b'"pi_handmade"', b'"pi_\\ud800"')
    raw = json.dumps(intent("raw")).encode().replace(b'"pi_handmade"', b'"pi_\xed\xa0\x80"')
    assert lone.count(b"ud800") == 1
    assert raw.count(b"\xed") == 1
    return [*out, ("lone_surrogate", lone), ("invalid_utf8", raw)]


def _signed(provider: str, body: bytes) -> Call:
    headers = {"Content-Type": "application/json", "Provider-Signature": sign(body, SECRET)}
    return Call("POST", f"/v1/webhooks/payments/{provider}", body=body, headers=headers)


def _paid(w: PayWorld) -> str:
    """An order paid at ``card1`` (by its answers: its webhooks are not delivered to us)."""
    oid = w.order()
    assert w.pay(oid).status == 202
    w.wait(oid, order="paid", payment="charged")
    return oid


DOWN = ("card1", "card", ("--outage", "503"))
"""A provider in outage: an attempt there is abandoned, so a charge event about it would be
applied (money seen is never ignored) and its values staged."""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_bad_signed_events_are_400_and_orders_placed_meanwhile_are_stored(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgres":
        postgres_dsn()
    with pay_world(backend, tmp_path, [DOWN], webhooks=False) as w:
        oid = w.order()
        assert w.pay(oid).status == 202
        w.wait(oid, order="pending_payment", payment="failed")
        events = bad_events(oid)
        buyers = [w.srv.token("buyer", f"meanwhile-{i}") for i in range(40)]
        orders = [
            Call("POST", "/v1/orders", token=t, json=order_body([(w.sku, 1)], w.region))
            for t in buyers
        ]
        # Interleaved, all released at once: the events and the orders share commit windows.
        calls: list[Call] = []
        for i, (_, body) in enumerate(events):
            calls += [_signed("card1", body), *orders[2 * i : 2 * i + 2]]
        calls += orders[2 * len(events) :]
        answers = w.srv.concurrently(calls)
        by_call = dict(zip(map(id, calls), answers, strict=True))
        for (name, body), call in zip(
            events, [c for c in calls if c.body is not None], strict=True
        ):
            resp = by_call[id(call)]
            assert resp.status == 400, (name, resp)
            assert resp.error_code == "invalid_event", (name, resp)
            assert len(resp.body) < 2000, (name, resp)  # the error does not echo the body
            assert body  # (the case had a body)
        created = [by_call[id(c)] for c in orders]
        assert [r.status for r in created] == [201] * len(orders), [str(r) for r in created]
        for r in created:
            assert w.shop.get_order(str(r.json()["id"]))["status"] == "pending_payment"
        log = w.srv.log_path.read_text()
        assert "commit of" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        # The order the events name is untouched by all of them.
        pay = w.payment(oid)
        assert (pay["status"], pay["charged"], pay["flag"]) == ("failed", 0, ""), pay
        [attempt] = pay["attempts"]
        assert (attempt["status"], attempt["amount_received"]) == ("abandoned", 0), attempt
        assert w.status(oid) == "pending_payment"


def test_a_well_formed_event_of_a_type_we_ignore_is_acknowledged(tmp_path: Path) -> None:
    with pay_world("sqlite", tmp_path, [CARD], webhooks=False) as w:
        event = {
            "id": "evt_charge",
            "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "amount": 2**70, "anything": _nested(50)}},
        }
        body = _deepen(json.dumps(event).encode())
        headers = {"Content-Type": "application/json", "Provider-Signature": sign(body, SECRET)}
        resp = w.srv.call("POST", "/v1/webhooks/payments/card1", body=body, headers=headers)
        assert resp.status == 200, resp
        assert resp.json()["duplicate"] is False


def test_a_malformed_answer_is_no_answer_and_the_next_provider_is_tried(tmp_path: Path) -> None:
    """card1 answers every call with amounts of 2**64: its attempt is abandoned (the reason
    recorded), card2 charges, and the order is paid once; nothing crashed."""
    providers = [
        ("card1", "card", ("--malformed-response-rate", "1")),
        ("card2", "card", ()),
    ]
    with pay_world("sqlite", tmp_path, providers) as w:
        oid = w.order()
        assert w.pay(oid).status == 202
        pay = w.wait(oid, order="paid", payment="charged")
        first, second = pay["attempts"]
        assert (first["provider"], first["status"]) == ("card1", "abandoned")
        assert "malformed answer" in first["error"], first
        assert "amount" in first["error"], first
        assert (second["provider"], second["status"]) == ("card2", "succeeded")
        assert pay["charged"] == 999
        # card1 did create a PaymentIntent (the call was carried out) but charged nothing.
        assert w.sandboxes["card1"].charges_for(oid) == []
        assert len(w.sandboxes["card2"].charges_for(oid)) == 1
        assert "Traceback" not in w.srv.log_path.read_text()


def test_a_malformed_refund_answer_is_retried_until_the_provider_answers_well(
    tmp_path: Path,
) -> None:
    """A refund's answers are malformed: the refund stays pending (the call is retried with
    the same Idempotency-Key), and settles once the provider answers well again."""
    with pay_world("sqlite", tmp_path, [CARD], webhooks=False) as w:
        oid = _paid(w)
        merchant = w.srv.admin()
        w.sandboxes["card1"].faults(malformed_response_rate=1.0)
        asked = w.srv.call(
            "POST",
            f"/v1/orders/{oid}/refunds",
            token=merchant,
            json={"amount": 300, "reason": "damaged"},
            headers={"Idempotency-Key": f"refund-{oid}"},
        )
        assert asked.status == 202, asked
        time.sleep(1.0)
        [refund] = w.srv.ok("GET", f"/v1/orders/{oid}/refunds", token=merchant)["refunds"]
        assert (refund["status"], refund["provider_refund_id"]) == ("pending", ""), refund
        w.sandboxes["card1"].faults(malformed_response_rate=0.0)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            [refund] = w.srv.ok("GET", f"/v1/orders/{oid}/refunds", token=merchant)["refunds"]
            if refund["status"] == "succeeded":
                break
            time.sleep(0.1)
        assert refund["status"] == "succeeded", refund
        # Sent again with the same key: refunded once at the provider.
        assert [r["amount"] for r in w.sandboxes["card1"].refunds()] == [300]
        log = w.srv.log_path.read_text()
        assert "malformed answer" in log
        assert "Traceback" not in log
