"""Smoke test of ``loadtest/http_bench.py``: one very short run (SQLite, 1 s per phase, small
batches) must complete and write a sane summary. It measures nothing; it keeps the script
working. Skipped when wrk is not installed (CI installs it: ``apt-get install -y wrk``)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)"
)
@pytest.mark.long  # a benchmark script's smoke run (the default run stays within 10 min)
def test_http_bench_runs(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "loadtest" / "http_bench.py"),
        "--duration",
        "1",
        "--connections",
        "4",
        "--batch-connections",
        "1",
        "--batch-size",
        "50",
        "--threads",
        "1",
        "--pairs",
        "2",
        "--pair-seconds",
        "1",
        "--out",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    [summary] = tmp_path.glob("http_bench-sqlite-*.json")
    result = json.loads(summary.read_text())
    assert result["single"]["requests"] > 0
    assert len(result["paired_ratios"]) == 2
    assert all(r > 0 for r in result["paired_ratios"])
    assert result["bare"]["requests"] > 0
    assert result["single"]["errors"]["status"] == 0, result["single"]
    # Requests still in flight when wrk stops are stored but not counted by wrk.
    single, batch = result["single"], result["batch"]
    assert single["requests"] <= single["durable_orders"] <= single["requests"] + 4, single
    assert 50 * batch["requests"] <= batch["durable_orders"] <= 50 * (batch["requests"] + 1), batch
    assert result["ratio_single_to_bare"] > 0
    assert list(tmp_path.glob("http_bench-sqlite-*.md"))


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)"
)
@pytest.mark.long  # a benchmark script's smoke run (the default run stays within 10 min)
def test_ab_bench_runs_two_builds_in_turn() -> None:
    """The same build twice, one short run each: both rows of the table, sane numbers."""
    cmd = [
        sys.executable,
        str(ROOT / "loadtest" / "ab_bench.py"),
        str(ROOT),
        str(ROOT),
        "--reps",
        "1",
        "--seconds",
        "1",
        "--connections",
        "4",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith(f"| {ROOT}")]
    assert len(rows) == 2, out.stdout
    for row in rows:
        per_s, loop_us, all_us = (float(cell.replace(",", "")) for cell in row[2:5])
        assert per_s > 0
        assert 0 < loop_us <= all_us, row
