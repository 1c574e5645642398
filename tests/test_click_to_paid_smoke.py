"""Smoke test of ``loadtest/click_to_paid.py``: a tiny run (SQLite, 20 orders, 4 clients) must
complete, pass its own ledger check and write a sane summary. It measures nothing; it keeps the
script working."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.long  # a benchmark script's smoke run (the default run stays within 10 min)
def test_click_to_paid_runs(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "loadtest" / "click_to_paid.py"),
        "--orders",
        "20",
        "--concurrency",
        "4",
        "--out",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    [summary] = tmp_path.glob("click_to_paid-sqlite-*.json")
    assert list(tmp_path.glob("click_to_paid-sqlite-*.md"))
    r = json.loads(summary.read_text())
    assert r["settings"]["poll_interval_ms"] == 2.0
    a, b, ok = r["pyorder"], r["baseline"], r["correctness"]
    assert (a["flows"], a["paid"], a["errors"]) == (20, 20, {}), a["errors"]
    for part in ("click_to_paid_ms", "order_created_ms", "payment_accepted_ms"):
        d = a[part]
        assert d["n"] == 20
        assert 0 < d["p50"] <= d["p95"] <= d["p99"] <= d["max"], (part, d)
    c2p, paid_after = a["click_to_paid_ms"], a["paid_after_accept_ms"]
    assert c2p["p50"] >= a["order_created_ms"]["p50"]
    assert paid_after["n"] == 20
    assert a["paid_orders_per_s"] > 0
    assert len(a["orders"]["rows"]) == 20
    assert b["create_confirm_ms"]["n"] == 20
    assert b["flows_per_s"] > 0
    assert not b["errors"]
    assert r["vs_baseline"]["p50"]["ratio"] > 0
    # The providers' ledgers: the 20 orders and the warm-up (4), each charged once.
    assert ok["ok"], ok["problems"]
    assert ok["paid_orders"] == ok["charges"] == 24
    assert ok["charged_total"] == ok["paid_orders_total"] > 0
    assert ok["refunds"] == 0
