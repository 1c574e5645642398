"""``loadtest/cluster_bench.py``: its false-out-of-stock count on made-up answers and samples,
and a tiny run (solo x1, cluster x1 and x2 on PostgreSQL, 1 s per phase, a sale of 60 units)
that must complete and write a sane summary. The run measures nothing; it keeps the script
working. Skipped without wrk or ``PYORDER_TEST_POSTGRES``."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.postgres import postgres_dsn

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "loadtest" / "cluster_bench.py"


def bench() -> ModuleType:
    """The script as a module (it imports ``http_bench`` from beside itself)."""
    if "cluster_bench" in sys.modules:
        return sys.modules["cluster_bench"]
    spec = importlib.util.spec_from_file_location("cluster_bench", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cluster_bench"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_false_out_of_stock_needs_units_left_after_the_answer_or_a_later_sale() -> None:
    cb = bench()
    answer = cb.Answer
    oos = [answer(0.0, t, 409, "out_of_stock") for t in (0.10, 0.20, 0.30, 0.50)]
    answers = [
        *oos,
        answer(0.05, 0.08, 201, ""),
        answer(0.25, 0.28, 201, ""),  # sent after the 0.10 and 0.20 refusals
        answer(0.0, 0.40, 409, "rate_limited"),  # not an out-of-stock answer
    ]
    samples = [(0.0, 5), (0.2, 3), (0.35, 1), (0.45, 0), (0.6, 0)]
    # Units left at 0.35: refusals at 0.10, 0.20, 0.30 were false (0.10 and 0.20 also by the
    # 201 sent at 0.25); the one at 0.50 came after the last sample with units.
    assert cb.false_out_of_stock(answers, samples, 0.0) == oos[:3]
    # With a 0.1 s grace the sample at 0.35 proves nothing about 0.30 (a commit may have been
    # in flight); the 201 sent at 0.25 still proves 0.10 and 0.20.
    assert cb.false_out_of_stock(answers, samples, 0.1) == oos[:2]
    assert cb.false_out_of_stock(answers[4:], samples, 0.0) == []


@pytest.mark.long
@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)"
)
def test_cluster_bench_runs(tmp_path: Path) -> None:
    stock = 60
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--database",
        postgres_dsn(),
        "--nodes",
        "1,2",
        "--duration",
        "1",
        "--connections",
        "4",
        "--batch-connections",
        "2",
        "--batch-size",
        "50",
        "--stock",
        str(stock),
        "--sale-clients",
        "8",
        "--out",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [summary] = tmp_path.glob("cluster_bench-*.json")
    result: dict[str, Any] = json.loads(summary.read_text())
    rows = result["rows"]
    assert [(r["mode"], r["nodes"]) for r in rows] == [("solo", 1), ("cluster", 1), ("cluster", 2)]
    for r in rows:
        for phase in ("single", "batch"):
            p = r[phase]
            assert p["acknowledged_orders"] > 0, (phase, p)
            assert p["missing"] == 0, (phase, p)
            # Requests in flight when wrk stopped are stored but not acknowledged within it.
            assert p["stored_orders"] == p["created_by_metrics"] >= p["acknowledged_orders"]
            assert p["cpu_us_per_order"]["pyorder"] > 0, (phase, p)
            assert len(p["p99_ms"]) == r["nodes"]
        assert r["single"]["ratio_to_solo"] > 0
        sale = r["sale"]
        assert not sale["oversold"], sale
        assert 0 < sale["units_sold"] <= stock
        assert sum(sale["answers"].values()) == sale["requests"] == 3 * stock
        assert sale["acknowledged_units"] == sale["answers"].get("201", 0) <= sale["units_sold"]
        refused = sale["answers"].get("409 out_of_stock", 0)
        assert sale["false_out_of_stock"] <= sale["out_of_stock_while_db_had_units"] <= refused
        assert sale["samples"] > 0
    # One solo core holds the whole stock: none of its refusals can be proved false.
    assert rows[0]["sale"]["false_out_of_stock"] == 0, rows[0]["sale"]
    assert rows[0]["sale"]["units_sold"] == stock
    [table] = tmp_path.glob("cluster_bench-*.md")
    assert "| cluster x2 |" in table.read_text()
