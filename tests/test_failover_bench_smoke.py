"""``loadtest/failover_bench.py`` still runs: a tiny run (1 s per throughput mode, one failover
with 1.5 s of load after it) that must lose no acknowledged order and print its tables. It
measures nothing. Long: it starts two PostgreSQL pairs and three servers (about 25 s)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.long
def test_failover_bench_runs_and_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("wrk") is None or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("needs wrk and PostgreSQL's server binaries")
    out = tmp_path / "failover.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "loadtest" / "failover_bench.py"),
            *("--duration", "1", "--rounds", "1", "--failovers", "1"),
            *("--before", "0.5", "--after", "1.5", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    assert "| synchronous |" in text, text
    assert "| asynchronous |" in text, text
    assert "lost: 0;" in text, text
