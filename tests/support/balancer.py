"""HAProxy in front of test servers: the configuration ``scripts/cluster.sh`` writes
(``pyorder.server.haproxy``), for the nodes a test gives, on free loopback ports.

HAProxy comes from Debian (``scripts/test.sh`` installs it); without it the tests that need it
are skipped with the reason, except when ``CI=true``, where that fails them.
"""

import csv
import io
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyorder.server.haproxy import Pool, render
from tests.support.server import free_port


def haproxy_binary() -> str:
    """The path of ``haproxy``; skips the test without one (fails it when ``CI=true``)."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None,
    )
    if found:
        return found
    reason = "needs HAProxy: `apt-get install -y haproxy` (scripts/test.sh installs it as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class Balancer:
    """An ``haproxy`` child process balancing over ``nodes`` (``host:port`` each)."""

    workdir: Path
    nodes: Sequence[str]
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> "Balancer":
        """Write the configuration, start HAProxy, wait until every node is seen up."""
        binary = haproxy_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "haproxy.cfg"
        pool = Pool(f"127.0.0.1:{self.port}", self.nodes, f"127.0.0.1:{self.stats_port}")
        config.write_text(render(pool))
        log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}; see {log.name}")
            try:
                if set(self.states().values()) == {"UP"}:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("haproxy did not see every node up in time")

    def states(self) -> dict[str, str]:
        """Each node's state as HAProxy holds it ("UP", "DOWN", "UP 1/2", ...), by
        ``host:port``, read from the stats page's CSV."""
        url = f"http://127.0.0.1:{self.stats_port}/;csv"
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode().lstrip("# ")
        by_name = {f"n{i}": node for i, node in enumerate(self.nodes, start=1)}
        return {
            by_name[row["svname"]]: row["status"]
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == "pyorder" and row["svname"] in by_name
        }

    def stop(self) -> None:
        """SIGTERM (HAProxy stops at once), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
