"""Two servers on one SQLite data directory: the second refuses to start, says why, and exits
non-zero; the first keeps serving (each would otherwise sell the same stock)."""

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.server import ROOT, ServerProcess, free_port


def test_a_second_server_on_the_same_sqlite_database_refuses_to_start(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "data").start()
    try:
        assert first.proc is not None
        second = subprocess.run(
            [
                *(sys.executable, "-m", "pyorder.server.main", "--host", "127.0.0.1"),
                *("--port", str(free_port()), "--data-dir", str(first.data_dir)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        error = second.stderr
        assert error.startswith("pyorder-server: error: "), error
        assert "pyorder.sqlite3 is already served by another process" in error
        assert f"pid {first.proc.pid} host {socket.gethostname()}" in error
        assert "single-process" in error
        assert "PostgreSQL" in error
        assert "Traceback" not in error  # an operator's message, not a crash
        with urllib.request.urlopen(first.url + "/readyz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        first.stop()
    assert first.proc.returncode == 0
