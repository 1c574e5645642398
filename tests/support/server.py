"""Run the real server as a child process on loopback, for end-to-end tests."""

import itertools
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pyorder.auth import Role, TokenIssuer, load_or_create_secret

ROOT = Path(__file__).resolve().parents[2]


PORTS_FROM = 20_000
"""The lowest port the tests' servers take (``free_port``)."""


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _port_slice() -> range:
    """This test process's ports: below the kernel's ephemeral range, where ``connect`` picks
    its local ports (a client connection of another test, or of PostgreSQL, once held a port
    that a server had been given, and the server failed to bind it), split between the xdist
    workers so that two never pick the same."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    span = (_ephemeral_low() - PORTS_FROM) // count
    start = PORTS_FROM + index * span
    return range(start, start + span)


_PORTS = _port_slice()
_STRIDE = 37
"""How far the next pick moves on: further than any run of ports a test asks for, so that
neither one port nor two runs are handed out twice until the slice has gone round."""
_picks = itertools.count(random.randrange(max(1, len(_PORTS))), _STRIDE)


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive loopback ports from this process's slice
    (``_port_slice``), checked free by binding them. Picks move ``_STRIDE`` ports on each
    time: a port picked by the kernel, or at random, came back while the first test server
    given it had not bound it yet. Without room in the slice the kernel picks (``count`` 1)."""
    room = len(_PORTS) - count
    for _ in range(room // _STRIDE + 1 if room > 0 else 0):
        base = _PORTS.start + next(_picks) % room
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    if count != 1:
        raise RuntimeError(f"no {count} free consecutive ports below the ephemeral range")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port() -> int:
    """A free loopback port (``free_ports``)."""
    return free_ports(1)


@dataclass
class ServerProcess:
    """A ``pyorder-server`` child process; ``restart`` keeps its port, data and database."""

    data_dir: Path
    database: str | None = None
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    nofile: int | None = None
    """The child's open-files limit (soft and hard), when not the inherited one."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: Role | str, subject: str) -> str:
        issuer = TokenIssuer(load_or_create_secret(self.data_dir))
        return issuer.mint(Role(role), subject)

    def start(self, timeout_s: float = 30.0) -> "ServerProcess":
        """Start the process and wait until ``/readyz`` answers 200."""
        return self.spawn().wait_ready(timeout_s)

    def spawn(self) -> "ServerProcess":
        """Start the process without waiting for it (``wait_ready`` does): a test starts
        the sandboxes the server talks to meanwhile, instead of one after the other."""
        cmd = [sys.executable, "-m", "pyorder.server.main", "--port", str(self.port)]
        cmd += ["--data-dir", str(self.data_dir), *self.args]
        if self.database:
            cmd += ["--database", self.database]
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._limits
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> "ServerProcess":
        """Wait (at most ``timeout_s``) until the spawned server's ``/readyz`` answers 200;
        stops it and raises if it exits or does not get there."""
        assert self.proc is not None, "spawn() first"
        log = self.data_dir.parent / f"server-{self.port}.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become ready in time")

    def _limits(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def kill(self) -> None:
        """SIGKILL: the crash the durability tests simulate."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM: graceful shutdown (flushes pending commits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> "ServerProcess":
        self.stop()
        return self.start()
