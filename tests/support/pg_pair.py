"""A PostgreSQL primary and streaming standby on loopback for the failover tests, started and
stopped by ``scripts/pg_pair.sh`` (the project's own script, so the tests exercise it too).

Needs the PostgreSQL server binaries (``/usr/lib/postgresql/*/bin``, 15 preferred, or
``PYORDER_PG_BINDIR``): without them the test is skipped, except when ``CI=true``, where it
fails, so CI never passes by skipping it.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pg_pair.sh"


@dataclass(frozen=True)
class PgPair:
    """A running pair: ``dsn`` names both servers (``target_session_attrs=read-write``)."""

    dir: Path
    dsn: str

    def run(self, command: str) -> str:
        """``pg_pair.sh command`` on this pair; its stdout."""
        done = subprocess.run(
            ["bash", str(SCRIPT), command, str(self.dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_pair.sh {command} failed:\n{done.stderr}")
        return done.stdout

    def primary_pid(self) -> int:
        """The postmaster of the server that is the primary now (``status``)."""
        for line in self.status().splitlines():
            fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            if fields.get("role") == "primary":
                return int(fields["pid"])
        raise RuntimeError(f"no primary in {self.dir}: {self.status()}")

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster (its backends end when they notice: they no longer
        accept work, and the clients' sockets are reset)."""
        os.kill(self.primary_pid(), signal.SIGKILL)

    def promote(self) -> None:
        self.run("promote")

    def rebuild_standby(self) -> None:
        """A new standby in the dead primary's place (the runbook's step after a failover)."""
        self.run("rebuild-standby")

    def status(self) -> str:
        return self.run("status")


def _binaries() -> bool:
    """Whether ``pg_pair.sh`` finds server binaries (it looks in the same places)."""
    given = os.environ.get("PYORDER_PG_BINDIR")
    dirs = [Path(given)] if given else list(Path("/usr/lib/postgresql").glob("*/bin"))
    return any(all((d / b).exists() for b in ("initdb", "pg_ctl", "pg_basebackup")) for d in dirs)


@contextmanager
def pg_pair(*, sync: bool = True) -> Iterator[PgPair]:
    """Start a fresh pair in a temporary directory (synchronous replication unless ``sync`` is
    False); stop it and delete its data on exit."""
    if not _binaries():
        message = (
            "the failover tests need PostgreSQL's server binaries (/usr/lib/postgresql/*/bin,"
            " or PYORDER_PG_BINDIR; scripts/postgres.sh installs them)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # Not under pytest's tmp_path: the servers run as the postgres OS user when root, and it
    # cannot enter root's private directories; the script hands this one over to it.
    folder = Path(tempfile.mkdtemp(prefix="pyorder-pair-"))
    env = {**os.environ, "PYORDER_PAIR_SYNC": "on" if sync else "off"}
    started = time.monotonic()
    up = subprocess.run(
        ["bash", str(SCRIPT), "up", str(folder)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    pair = PgPair(folder, up.stdout.strip())
    try:
        if up.returncode != 0:
            raise RuntimeError(f"pg_pair.sh up failed:\n{up.stderr}")
        print(f"PostgreSQL pair up in {time.monotonic() - started:.1f} s: {pair.dsn}")
        yield pair
    finally:
        subprocess.run(["bash", str(SCRIPT), "down", str(folder)], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
