"""The benchmark scripts still run (tiny sizes, fresh processes), so they never rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.postgres import postgres_dsn

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_hot_sku_script_sells_exactly_the_stock() -> None:
    done = run("hot_sku.py", "--units", "5000", "--batch", "64", "--threads", "1,2,4")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [
        line.split()
        for line in done.stdout.splitlines()
        if line.split()[:1] in (["1"], ["2"], ["4"])
    ]
    assert [row[0] for row in rows] == ["1", "2", "4"]
    assert all(row[-1] == "ok" and row[3] == row[4] == row[6] == "5,000" for row in rows)


def test_memory_script_measures_and_checks_the_budget() -> None:
    done = run("memory_inventory.py", "--skus", "2000", "--reservations", "1000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "open reservations: 1,000" in done.stdout
    assert "budget 256 MiB: ok" in done.stdout
    over = run(
        "memory_inventory.py", "--skus", "2000", "--reservations", "1000", "--budget-mib=-1000"
    )
    assert over.returncode == 1
    assert "OVER BUDGET" in over.stdout


def test_order_book_memory_script_holds_every_order() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_order_book", "--orders", "3000"],
        cwd=BENCHMARKS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pending orders: 3,000" in done.stdout
    assert "bytes" in done.stdout


def test_book_growth_script_times_every_window() -> None:
    done = run("book_growth.py", "--orders", "20000", "--window", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    held = [line.split("|")[1].strip() for line in done.stdout.splitlines() if "| " in line]
    assert held[-4:] == ["5,000", "10,000", "15,000", "20,000"]
    assert "slowest call overall:" in done.stdout


def test_webhook_cost_script_measures_both_ways() -> None:
    done = run("webhook_cost.py", "--orders", "400", "--batch", "100", "--clients", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [
        line.split()[:3]
        for line in done.stdout.splitlines()
        if line.split()[:1] in (["store"], ["server"])
    ]
    assert rows == [
        ["store", "sqlite", "none"],
        ["store", "sqlite", "yes"],
        ["server", "sqlite", "none"],
        ["server", "sqlite", "yes"],
    ]


def test_risk_model_script_scores_as_lightgbm_does() -> None:
    done = run("risk_model.py", "--train-rows", "3000", "--rows", "2000", "--trees", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "probabilities equal to LightGBM's on 2,000 rows: yes" in done.stdout
    assert "core, batch:" in done.stdout


def test_pg_statement_encoding_script_measures_both_ways() -> None:
    dsn = postgres_dsn()
    done = run("pg_statement_encoding.py", "--database", dsn, "--rounds", "2", "--statements", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| l")]
    assert [r[1].strip() for r in rows] == ["lists", "literals"]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
