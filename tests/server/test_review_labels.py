"""The review queue's verdicts feed back as labels, end to end on both stores: orders the
policy holds for review through the real server keep the features they were decided on, a
reviewer approves or rejects them over the API, and ``python -m pyorder.risk.labels`` exports
them (while the server runs) as training rows of the catalogue's columns that the shipped
model's training takes (``pyorder.risk.ship --reviews``)."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from pyorder.risk import labels
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.train import train
from tests.server.e2e_lib import Launch, Server, Shop, address, unique
from tests.server.test_risk_intake import _flash_sale, _place


def _database(srv: Server) -> str:
    dsn = srv.proc.database
    return dsn if dsn is not None else str(srv.proc.data_dir / "pyorder.sqlite3")


def test_reviewed_orders_are_exported_with_their_features(launch: Launch, tmp_path: Path) -> None:
    srv = launch("--risk", "--trusted-proxy", "127.0.0.0/8")
    shop, region = Shop(srv), unique("north")
    seller = srv.token("merchant", "seller")
    sku = shop.sku({shop.warehouse(regions=[region]): 500}, price=59_900, token=seller)
    admin = srv.admin()
    rule = {"action": "review", "condition": "amount >= 50000"}
    srv.ok("POST", "/v1/risk/rules", token=admin, json=rule, expect=201)
    held = []
    for n, buyer in enumerate(("r1", "r2", "r3")):
        resp = _place(srv, buyer, sku, region, ip=f"10.1.0.{n}", device=f"dev-{buyer}")
        assert (resp.status, resp.json()["status"]) == (201, "in_review"), resp
        held.append(int(resp.json()["id"]))
    srv.ok("POST", f"/v1/risk/reviews/{held[0]}", token=admin, json={"outcome": "approve"})
    srv.ok("POST", f"/v1/risk/reviews/{held[1]}", token=admin, json={"outcome": "reject"})
    # held[2] stays open: no verdict, no label; its reviewer reads every feature it was
    # decided on, as the queue lists it.
    (review,) = srv.ok("GET", "/v1/risk/reviews", token=admin)["reviews"]
    features = review["decision"]["features"]
    assert review["order"]["id"] == str(held[2])
    assert (features["amount"], features["agent_class"]) == (59_900, 1)
    assert "instrument_attempts_1h" not in features  # missing: no payment yet
    assert srv.ok("GET", f"/v1/orders/{held[2]}/risk", token=admin)["features"] == features
    # Not to a merchant: the counts span every merchant's orders.
    assert review["decision"]["merchant"] == "merchant:seller"
    assert srv.ok("GET", f"/v1/orders/{held[2]}/risk", token=seller)["features"] is None

    out = tmp_path / "reviews"
    command = ["-m", "pyorder.risk.labels", "--database", _database(srv), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "2 reviewed decisions (1 rejected or reported, 1 approved)" in done.stdout, done.stdout
    features, verdicts = labels.load(out)
    assert np.load(out / "ids.npy").tolist() == held[:2]
    assert verdicts.tolist() == [0.0, 1.0]
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    for row in features:
        assert row[column["amount"]] == 59_900
        assert row[column["buyer_orders_1m"]] == 0  # its buyer's first order (before it)
        assert row[column["agent_class"]] == 1  # a browser
        assert math.isnan(row[column["instrument_attempts_1h"]])  # no payment yet
    assert features[1, column["ip_orders_1h"]] == 0  # a new IP each

    # The rows train with the catalogue's names, as ship --reviews appends them.
    rng = np.random.default_rng(0)
    base = rng.random((400, len(FEATURE_NAMES)))
    trained = train(
        np.vstack([base, features]),
        np.concatenate([(rng.random(400) < 0.2).astype(np.float64), verdicts]),
        feature_names=FEATURE_NAMES,
        num_trees=2,
    )
    assert trained.manifest.training_rows == 402


def test_a_batch_held_for_review_keeps_every_orders_features(
    launch: Launch, tmp_path: Path
) -> None:
    """70 orders in one batch body (PostgreSQL: past the COPY threshold of 64, so the decisions'
    rows go by binary COPY) all held by a review rule: the reviewed ones export with their
    features (rules only: the model would block some of one buyer's 70 orders)."""
    srv = launch("--risk", "--risk-rules-only", "--trusted-proxy", "127.0.0.0/8")
    _, sku, region = _flash_sale(srv)
    admin = srv.admin()
    rule = {"action": "review", "condition": "amount >= 50000"}
    srv.ok("POST", "/v1/risk/rules", token=admin, json=rule, expect=201)
    orders = [
        {
            "lines": [{"sku": sku, "quantity": 1}],
            "address": address(region, line1=f"{i} Lane"),
            "context": {"device_id": f"d-{i}"},
        }
        for i in range(70)
    ]
    resp = srv.call(
        "POST",
        "/v1/orders/batch",
        token=srv.token("buyer", "bulk"),
        json={"orders": orders},
        headers={"X-Forwarded-For": "10.4.4.4"},
    )
    assert resp.status == 200, resp
    held = [int(r["order"]["id"]) for r in resp.json()["results"]]
    assert len(held) == 70
    srv.ok("POST", f"/v1/risk/reviews/{held[0]}", token=admin, json={"outcome": "reject"})
    srv.ok("POST", f"/v1/risk/reviews/{held[-1]}", token=admin, json={"outcome": "approve"})
    out = tmp_path / "reviews"
    labels.write(labels.examples(labels.read_labels(_database(srv))), out)
    features, verdicts = labels.load(out)
    assert np.load(out / "ids.npy").tolist() == [held[0], held[-1]]
    assert verdicts.tolist() == [1.0, 0.0]
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    # The batch's orders count one after another: the last saw the 69 before it on its IP.
    assert features[:, column["ip_orders_1m"]].tolist() == [0, 69]
    assert (features[:, column["amount"]] == 59_900).all()
