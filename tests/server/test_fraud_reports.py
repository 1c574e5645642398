"""Fraud reports feed back as labels, end to end on both stores: with every allowed order
sampled (``--risk-sample-allowed 1``) an allowed order's decision keeps its features, the
decision's merchant reports a chargeback over the API (once: a second report is answered with
the first), who may report and read is checked, and ``python -m pyorder.risk.labels`` exports
the sampled orders labelled by the reports, the charged unreported ones as honest only once old
enough (paid through the payment sandbox), the unpaid ones never, and a reviewer's approval
followed by a report as fraud."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pyorder.risk import labels
from pyorder.risk.features import FEATURE_NAMES
from tests.payments.lib import pay_world
from tests.server.e2e_lib import Launch, Server, Shop, address, unique
from tests.server.test_risk_intake import _place
from tests.support.postgres import fresh_postgres_database, postgres_dsn
from tests.support.server import ServerProcess

SAMPLE_ALL = ("--risk", "--risk-sample-allowed", "1", "--trusted-proxy", "127.0.0.0/8")


def _database(srv: Server) -> str:
    dsn = srv.proc.database
    return dsn if dsn is not None else str(srv.proc.data_dir / "pyorder.sqlite3")


def _export(srv: Server, out: Path, *args: str) -> str:
    command = ["-m", "pyorder.risk.labels", "--database", _database(srv), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, *command, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_reported_orders_become_labels(launch: Launch, tmp_path: Path) -> None:
    srv = launch(*SAMPLE_ALL)
    shop, region = Shop(srv), unique("north")
    seller, other = srv.token("merchant", "seller"), srv.token("merchant", "other")
    admin = srv.admin()
    wh = shop.warehouse(regions=[region])
    cheap = shop.sku({wh: 50}, price=1_999, token=seller)
    dear = shop.sku({wh: 50}, price=59_900, token=seller)
    theirs = shop.sku({wh: 50}, price=2_500, token=other)
    rule = {"action": "review", "condition": "amount >= 50000"}
    srv.ok("POST", "/v1/risk/rules", token=admin, json=rule, expect=201)
    allowed = []
    for n in range(3):
        resp = _place(srv, f"f{n}", cheap, region, ip=f"10.2.0.{n}", device=f"dev-f{n}")
        assert (resp.status, resp.json()["status"]) == (201, "pending_payment"), resp
        allowed.append(int(resp.json()["id"]))
    resp = _place(srv, "f9", dear, region, ip="10.2.0.9", device="dev-f9")
    assert (resp.status, resp.json()["status"]) == (201, "in_review"), resp
    held = int(resp.json()["id"])

    # Sampled: the allowed order's decision keeps every feature it was decided on.
    decision = srv.ok("GET", f"/v1/orders/{allowed[0]}/risk", token=admin)
    assert decision["outcome"] == "allow"
    assert decision["features"]["amount"] == 1_999

    path = f"/v1/orders/{allowed[0]}/fraud-report"
    body = {"source": "chargeback", "note": "issuer code 10.4"}
    made = srv.ok("POST", path, token=seller, json=body, expect=201)
    assert (made["order_id"], made["merchant"], made["source"]) == (
        str(allowed[0]),
        "merchant:seller",
        "chargeback",
    )
    assert (made["reporter"], made["note"]) == ("merchant:seller", "issuer code 10.4")
    # The first report is kept: a second one is answered with it.
    again = srv.ok("POST", path, token=admin, json={"source": "merchant_report"}, expect=200)
    assert again == made
    assert srv.ok("GET", path, token=admin) == made
    assert srv.ok("GET", path, token=seller) == made
    # Who may: not another merchant (404, as the order), never a buyer (403).
    assert srv.call("POST", path, token=other, json=body).error_code == "not_found"
    assert srv.call("GET", path, token=other).status == 404
    buyer = srv.token("buyer", "f0")
    assert srv.call("POST", path, token=buyer, json=body).status == 403
    assert srv.call("GET", path, token=buyer).status == 403
    # Bad input: a clear 422, nothing stored.
    unreported = f"/v1/orders/{allowed[1]}/fraud-report"
    for bad in ({"source": "hunch"}, {"source": "chargeback", "note": "x" * 501}, {}):
        resp = srv.call("POST", unreported, token=seller, json=bad)
        assert (resp.status, resp.error_code) == (422, "invalid_input"), resp
    assert srv.call("GET", unreported, token=admin).status == 404
    assert srv.call("POST", "/v1/orders/999999/fraud-report", token=admin, json=body).status == 404

    # A mixed order: its decision is the first line's merchant's, the other merchant's 404.
    mixed = srv.ok(
        "POST",
        "/v1/orders",
        token=buyer,
        json={
            "lines": [{"sku": cheap, "quantity": 1}, {"sku": theirs, "quantity": 1}],
            "address": address(region),
        },
        expect=201,
    )["id"]
    mixed_path = f"/v1/orders/{mixed}/fraud-report"
    assert srv.call("POST", mixed_path, token=other, json=body).status == 404
    srv.ok("POST", mixed_path, token=seller, json=body, expect=201)
    assert srv.call("GET", mixed_path, token=other).status == 404

    # A reviewer approved the held order; it is charged back later: fraud after all.
    srv.ok("POST", f"/v1/risk/reviews/{held}", token=admin, json={"outcome": "approve"})
    srv.ok("POST", f"/v1/orders/{held}/fraud-report", token=admin, json=body, expect=201)

    # The export: nothing was paid here, so no unreported order is honest for certain, old
    # or young: the reported ones are the sampled labels.
    for args, out in (((), tmp_path / "young"), (("--mature-days", "0"), tmp_path / "all")):
        printed = _export(srv, out, *args)
        assert "1 reviewed decisions (1 rejected or reported, 0 approved)" in printed, printed
        assert "2 sampled allowed orders (2 reported as fraud, 0 charged" in printed, printed
        assert "sampled orders 0 too recent to label and 2 never charged" in printed, printed
        assert "0 fraud reports of orders not sampled" in printed, printed
        features, verdicts = labels.load(out)
        assert np.load(out / "ids.npy").tolist() == [allowed[0], held, int(mixed)]
        assert verdicts.tolist() == [1.0, 1.0, 1.0]
        assert np.load(out / "sampled.npy").tolist() == [True, False, True]
        amount = FEATURE_NAMES.index("amount")
        assert features[:, amount].tolist() == [1_999, 59_900, 1_999 + 2_500]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_charged_orders_are_honest_once_mature(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        postgres_dsn()
    card = ("card1", "card", ())
    with pay_world(backend, tmp_path, [card], server_args=SAMPLE_ALL) as w:
        paid = [w.order(), w.order(), w.order()]
        for oid in paid:
            assert w.pay(oid).status == 202
            w.wait(oid, order="paid", payment="charged")
        unpaid = w.order()
        admin = w.srv.admin()
        body = {"source": "chargeback"}
        w.srv.ok("POST", f"/v1/orders/{paid[1]}/fraud-report", token=admin, json=body, expect=201)
        young = _export(w.srv, tmp_path / "young")
        assert "1 sampled allowed orders (1 reported as fraud, 0 charged" in young, young
        assert "sampled orders 2 too recent to label and 1 never charged" in young, young
        out = tmp_path / "mature"
        mature = _export(w.srv, out, "--mature-days", "0")
        assert "3 sampled allowed orders (1 reported as fraud, 2 charged" in mature, mature
        assert "sampled orders 0 too recent to label and 1 never charged" in mature, mature
        _, verdicts = labels.load(out)
        assert np.load(out / "ids.npy").tolist() == [int(x) for x in paid]
        assert int(unpaid) not in np.load(out / "ids.npy").tolist()
        assert verdicts.tolist() == [0.0, 1.0, 0.0]


def test_a_report_on_any_cluster_node(tmp_path: Path) -> None:
    """Two ``--cluster`` nodes on one PostgreSQL: an order taken on A (its decision sampled) is
    reported through B and read through A; a second report through A, and one through B at
    the same time as another through A, keep the first; the export sees the one report."""
    with fresh_postgres_database("pyorder_fraud_cluster") as dsn:
        data = tmp_path / "data"  # shared: one token secret for the cluster
        solo = Server(ServerProcess(data, dsn).start(), "postgres")
        shop = Shop(solo)
        seller = solo.token("merchant", "seller")
        sku = shop.sku({shop.warehouse(regions=["north"]): 20}, token=seller)
        solo.stop()
        args = ("--cluster", *SAMPLE_ALL)
        a = Server(ServerProcess(data, dsn, args=args).start(), "postgres")
        try:
            b = Server(ServerProcess(data, dsn, args=args).start(), "postgres")
            try:
                buyer = a.token("buyer", "c1")
                ids = [
                    a.ok("POST", "/v1/orders", token=buyer, json=body, expect=201)["id"]
                    for body in [
                        {"lines": [{"sku": sku, "quantity": 1}], "address": address("north")}
                    ]
                    * 2
                ]
                first = {"source": "chargeback", "note": "via B"}
                made = b.ok(
                    "POST",
                    f"/v1/orders/{ids[0]}/fraud-report",
                    token=seller,
                    json=first,
                    expect=201,
                )
                assert a.ok("GET", f"/v1/orders/{ids[0]}/fraud-report", token=seller) == made
                later = {"source": "merchant_report"}
                again = a.ok("POST", f"/v1/orders/{ids[0]}/fraud-report", token=seller, json=later)
                assert again == made
                # Two nodes at once on the other order: the store keeps one, which both read.
                with ThreadPoolExecutor(2) as pool:
                    answers = list(
                        pool.map(
                            lambda node: node.call(
                                "POST",
                                f"/v1/orders/{ids[1]}/fraud-report",
                                token=seller,
                                json={"source": "chargeback", "note": f"node {node.url}"},
                            ),
                            (a, b),
                        )
                    )
                assert {r.status for r in answers} <= {200, 201}
                kept = a.ok("GET", f"/v1/orders/{ids[1]}/fraud-report", token=seller)
                assert b.ok("GET", f"/v1/orders/{ids[1]}/fraud-report", token=seller) == kept
                assert kept in [r.json() for r in answers]
                printed = _export(a, tmp_path / "out")
                assert "2 sampled allowed orders (2 reported as fraud" in printed, printed
            finally:
                b.stop()
        finally:
            a.stop()
