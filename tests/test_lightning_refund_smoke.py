"""Smoke test of ``loadtest/lightning_refund.py``: a tiny run (SQLite, 10 returns, 4 at a time)
must complete, pass its own ledger check and write a sane summary. It measures nothing; it
keeps the script working."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.long  # a benchmark script's smoke run (the default run stays within 10 min)
def test_lightning_refund_runs(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "loadtest" / "lightning_refund.py")]
    cmd += ["--returns", "10", "--concurrency", "4", "--scan-interval-ms", "100"]
    cmd += ["--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    [summary] = tmp_path.glob("lightning_refund-sqlite-*.json")
    assert list(tmp_path.glob("lightning_refund-sqlite-*.md"))
    r = json.loads(summary.read_text())
    assert (r["flows"], r["refunded"], r["errors"]) == (10, 10, {}), r["errors"]
    for part in ("scan_to_issued_ms", "scan_to_visible_ms", "scan_to_succeeded_ms"):
        d = r[part]
        assert d["n"] == 10
        assert 0 <= d["p50"] <= d["p95"] <= d["p99"] <= d["max"], (part, d)
    # Seen refunded only once durable: never before the refund was issued.
    assert all(row["visible_ms"] >= row["issued_ms"] for row in r["rows"])
    ok = r["correctness"]
    assert ok["ok"], ok["problems"]
    assert ok["provider_refunds"] == ok["parcels_back"] == 10
    assert ok["lightning_refunds_metric"] == 10
