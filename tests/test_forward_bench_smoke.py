"""``loadtest/forward_bench.py``: one tiny round (1 s per measurement) must complete, and the
summary must show requests forwarded by node B and a sane ratio. It measures nothing; it keeps
the script working. Skipped without wrk or ``PYORDER_TEST_POSTGRES``."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import postgres_dsn

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.long
@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)"
)
def test_forward_bench_runs(tmp_path: Path) -> None:
    dsn = postgres_dsn()
    cmd = [sys.executable, str(ROOT / "loadtest" / "forward_bench.py"), "--database", dsn]
    cmd += ["--duration", "1", "--rounds", "1", "--connections", "4", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [summary] = tmp_path.glob("forward_bench-*.json")
    result = json.loads(summary.read_text())
    [row] = result["rounds"]
    assert row["forwarded"]["requests"] > 0
    assert 0 < row["ratio"] < 10
    # B forwarded its warm-up and the round's requests; A's own were served there.
    assert result["forwarded_by_b"] >= row["forwarded"]["requests"]
