"""``pyorder-server --workers N``: a supervisor that runs N cluster workers on one port.

Each worker is a fresh interpreter (``python -m pyorder.server.main``: nothing is forked from
a process that has imported or started the platform) with the supervisor's own arguments plus
``--cluster``. Every worker binds the same host:port with ``SO_REUSEPORT``, so the kernel
spreads new connections over them, and leases its own order-ID node number and its stock from
PostgreSQL like any cluster node (``docs/scale-out.md``).

The supervisor forwards SIGTERM and SIGINT to the workers and waits for them (each drains for
``--drain-s``, finishes its requests and gives its stock leases back; a second signal is
forwarded too and cuts the drain short), restarts a worker that dies while the supervisor is
not stopping, and gives up (exit 1) when workers keep dying: more than
``RestartBudget.max_restarts`` restarts within ``RestartBudget.window_s``, as a refused start
(another node serves the database, the database is unreachable) does at once.
"""

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

POLL_S = 0.05
"""How often the supervisor looks at its workers, seconds."""
STOP_TIMEOUT_S = 30.0
"""How long a stopping worker may take after its drain period (it finishes requests in flight
for up to 10 s, then closes the platform) before it is killed, seconds."""


@dataclass(frozen=True)
class RestartBudget:
    """How often dead workers are restarted. One more restart than ``max_restarts`` within
    ``window_s`` seconds means the workers keep dying, and the supervisor stops."""

    max_restarts: int = 3
    window_s: float = 60.0
    delay_s: float = 0.5
    """Wait before a restart, seconds: the dead worker's database session ends meanwhile."""


def worker_argv(
    argv: Sequence[str], supervisor_pid: int, metrics: tuple[str, int] | None, index: int
) -> list[str]:
    """The command line of worker ``index`` (0-based): the supervisor's arguments, then the
    worker's overrides (argparse keeps the last value of an option): one worker, cluster mode,
    SO_REUSEPORT under this supervisor, and its own metrics port (``metrics`` port + index)."""
    cmd = [sys.executable, "-m", "pyorder.server.main", *argv]
    cmd += ["--workers", "1", "--cluster", "--worker-of", str(supervisor_pid)]
    if metrics is not None:
        host, port = metrics
        host = f"[{host}]" if ":" in host else host
        cmd += ["--metrics-listen", f"{host}:{port + index}"]
    return cmd


class Supervisor:
    """Runs ``count`` workers until SIGTERM or SIGINT; ``run`` returns the exit status."""

    def __init__(
        self,
        argv: Sequence[str],
        count: int,
        *,
        metrics: tuple[str, int] | None = None,
        budget: RestartBudget | None = None,
        drain_s: float = 0.0,
    ) -> None:
        self.argv = list(argv)
        self.count = count
        self.metrics = metrics
        self.budget = budget or RestartBudget()
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * count
        self.due: list[float] = [0.0] * count
        """When each empty slot starts its worker (``time.monotonic``)."""
        self.restarts: deque[float] = deque()
        self.stopping = False
        self.drain_s = drain_s
        """The workers' drain period (``--drain-s``): added to their stop timeout."""
        self.stopped: list[subprocess.Popen[bytes]] = []
        """The workers sent SIGTERM by ``_stop_all``: a further signal is forwarded to them."""

    def run(self) -> int:
        """Start the workers, keep them running, and stop them on a signal: 0 when they all
        stopped cleanly, 1 when one had to be killed or they kept dying."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for k in range(self.count):
            self._start(k)
        failed = False
        while not self.stopping:
            time.sleep(POLL_S)
            if not self._watch():
                failed = True
                break
        clean = self._stop_all()
        return 1 if failed or not clean else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for proc in self.stopped:  # a second signal: the workers stop without draining
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def _start(self, k: int) -> None:
        cmd = worker_argv(self.argv, os.getpid(), self.metrics, k)
        # Its own process group: a terminal's Ctrl-C reaches the supervisor alone, which
        # stops the workers in order.
        proc = subprocess.Popen(cmd, process_group=0)
        self.workers[k] = proc
        log.info("worker %d started (pid %d)", k, proc.pid)

    def _watch(self) -> bool:
        """Restart dead workers when due; False when they keep dying (budget spent)."""
        now = time.monotonic()
        for k, proc in enumerate(self.workers):
            if proc is None:
                if now >= self.due[k]:
                    self._start(k)
                continue
            code = proc.poll()
            if code is None:
                continue
            self.workers[k] = None
            while self.restarts and self.restarts[0] <= now - self.budget.window_s:
                self.restarts.popleft()
            if len(self.restarts) >= self.budget.max_restarts:
                sys.stderr.write(
                    f"pyorder-server: error: worker {k} exited with {_describe(code)}, and"
                    f" workers were restarted {len(self.restarts)} times in the last"
                    f" {self.budget.window_s:g} s: they keep dying, stopping\n"
                )
                return False
            self.restarts.append(now)
            self.due[k] = now + self.budget.delay_s
            log.warning(
                "worker %d (pid %d) exited with %s; restarting it (%d of at most %d restarts"
                " per %g s)",
                k,
                proc.pid,
                _describe(code),
                len(self.restarts),
                self.budget.max_restarts,
                self.budget.window_s,
            )
        return True

    def _stop_all(self) -> bool:
        """SIGTERM every worker and wait for them; True when all stopped cleanly in time."""
        running = [p for p in self.workers if p is not None and p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        self.stopped = running
        timeout = self.drain_s + STOP_TIMEOUT_S
        deadline = time.monotonic() + timeout
        clean = True
        for proc in running:
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %g s; killing it", proc.pid, timeout)
                proc.kill()
                code = proc.wait()
            # A worker takes SIGTERM as "stop gracefully" from the moment its event loop runs,
            # before it claims anything; SIGTERM itself ended only one still importing.
            if code in (0, -signal.SIGTERM):
                log.info("worker pid %d stopped (%s)", proc.pid, _describe(code))
            else:
                log.error("worker pid %d exited with %s while stopping", proc.pid, _describe(code))
                clean = False
        return clean


def _describe(code: int) -> str:
    """An exit status as a person reads it: ``1``, or ``SIGKILL`` for a signal."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)
