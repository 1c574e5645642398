"""Durability: a writer killed with SIGKILL loses nothing that ``commit`` acknowledged, and
leaves no partial batch."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyorder.storage.base import Store

from .backends import Backend
from .crash_child import BATCH

TESTS_DIR = Path(__file__).resolve().parent.parent
ACKED_BATCHES = 40
"""Batches the child must acknowledge before it is killed (it keeps committing meanwhile)."""


def test_acknowledged_commits_survive_sigkill(store: Backend) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "storage.crash_child", store.name, store.location],
        cwd=TESTS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[tuple[int, int]] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        assert child.stdout.readline().strip() == "ready"
        while len(acked) < ACKED_BATCHES and time.monotonic() < deadline:
            text = child.stdout.readline()
            if not text:
                break
            first, last = map(int, text.split())
            acked.append((first, last))
        os.kill(child.pid, signal.SIGKILL)  # mid-loop: most likely mid-commit
    finally:
        child.kill()
        _, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) == ACKED_BATCHES, f"child stopped early: {err[-2000:]}"

    async def stored_ids(s: Store) -> list[int]:
        assert await s.schema_version() >= 1
        ids = [o.id for o in (await s.load()).pending_orders]
        return ids

    ids = store.run(stored_ids)
    acked_ids = [i for first, last in acked for i in range(first, last + 1)]
    assert ids[: len(acked_ids)] == acked_ids  # every acknowledged order is there
    # and what follows is whole batches only (the one in flight committed or did not).
    assert len(ids) % BATCH == 0
    assert ids == list(range(1, len(ids) + 1))
