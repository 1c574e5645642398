"""Smoke test of the locust flash sale (``loadtest/flash_sale.py``): a short, small run must
sell exactly the stock, pass its own check against the server and the providers' ledgers, and
write locust's reports, the plot and the summary. It measures nothing; it keeps it working."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_flash_sale_sells_the_stock_once(tmp_path: Path) -> None:
    # Found, not imported: importing locust monkey-patches this process (gevent).
    for module in ("locust", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    cmd = [sys.executable, str(ROOT / "loadtest" / "flash_sale.py"), "--out", str(tmp_path)]
    cmd += ["--users", "30", "--spawn-rate", "30", "--duration", "4", "--stock", "40"]
    cmd += ["--buyers", "60", "--limit", "2"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [run_dir] = tmp_path.glob("flash_sale-sqlite-*")
    r = json.loads((run_dir / "summary.json").read_text())
    check = r["check"]
    assert check["ok"], check["problems"]
    assert check["units_taken"] == 40  # 30 users clicking for 4 s sell out 40 units
    assert check["orders_paid"] == check["orders_created"] == check["charges"]
    assert r["requests"]["order"]["requests"] > check["orders_created"]  # most were refused
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust.html", "flash_sale.png"):
        assert (run_dir / name).stat().st_size > 0, name
