"""Smoke tests of the locust scenarios (``loadtest/scenario.py``): short, small runs must pass
their own checks against the server (and the providers' ledgers) and write locust's reports,
the plot and the summary. They measure nothing; they keep the scenarios working."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path: Path, scenario: str, *args: str) -> dict[str, Any]:
    # Found, not imported: importing locust monkey-patches this process (gevent).
    for module in ("locust", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    cmd = [sys.executable, str(ROOT / "loadtest" / "scenario.py"), scenario, "--out", str(tmp_path)]
    out = subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [run_dir] = tmp_path.glob(f"{scenario}-sqlite-*")
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust.html"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "throughput_latency.png").stat().st_size > 0
    result: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return result


@pytest.mark.long  # a benchmark script's smoke run (the default run stays within 10 min)
def test_flash_sale_sells_the_stock_once(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        "flash-sale",
        "--users",
        "30",
        "--spawn-rate",
        "30",
        "--duration",
        "4",
        "--stock",
        "40",
        "--buyers",
        "60",
        "--limit",
        "2",
    )
    check = r["check"]
    assert check["ok"], check["problems"]
    assert check["units_taken"] == 40  # 30 users clicking for 4 s sell out 40 units
    assert check["orders_paid"] == check["orders_created"] == check["charges"]
    assert r["requests"]["order"]["requests"] > check["orders_created"]  # most were refused


@pytest.mark.long  # a benchmark script's smoke run (the default run stays within 10 min)
def test_gateway_orders_hold_exactly_the_units_taken(tmp_path: Path) -> None:
    r = run(tmp_path, "gateway", "--users", "2", "--spawn-rate", "2", "--duration", "3")
    check = r["check"]
    assert check["ok"], check["problems"]
    assert check["orders_created"] > 0
    assert r["requests"]["batch of 100"]["failures"] == 0


@pytest.mark.long
def test_everyday_shopping_settles_every_order(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        "everyday",
        *("--users", "20", "--spawn-rate", "20", "--duration", "8"),
        *("--catalogue", "120", "--stock", "40", "--buyers", "40"),
        *("--expire-after-s", "4", "--scan-interval-s", "0.3", "--return-rate", "0.5"),
    )
    check = r["check"]
    assert check["ok"], check["problems"]
    statuses = check["statuses"]
    assert statuses.get("paid", 0) > 0, statuses
    assert statuses.get("expired", 0) > 0, statuses
    assert check["charges"] == statuses["paid"]
    assert check["parcels"] >= statuses["paid"]  # auto-shipped: a parcel per warehouse
    failures = {name: s["failures"] for name, s in r["requests"].items() if s["failures"]}
    assert not failures, failures
