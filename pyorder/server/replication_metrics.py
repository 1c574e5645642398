"""``/metrics`` of the database's replication (``pyorder.storage.replication``): read from the
primary when metrics are scraped, at most once a second, so that no task polls it meanwhile.

- ``pyorder_pg_standbys{state, sync_state}``: standbys the primary streams to;
- ``pyorder_pg_replication_lag_bytes{standby, sync_state}``: WAL not replayed there yet;
- ``pyorder_pg_replication_replay_lag_seconds{standby}``: PostgreSQL's ``replay_lag``;
- ``pyorder_pg_replication_read_failures_total``: scrapes that could not read them (the
  figures shown are then the last read's).

A figure PostgreSQL hides (no ``pg_read_all_stats`` role) is left out.
"""

import asyncio
import collections
import logging
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pyorder.storage.base import StorageError, Store
from pyorder.storage.replication import Standby

log = logging.getLogger(__name__)

READ_EVERY_S = 1.0
"""Scrapes closer together than this show the last read."""
READ_TIMEOUT_S = 1.0
"""A read that takes longer is given up (the scrape answers with the last one)."""


class ReplicationStats(Collector):
    """The last read of the store's standbys; ``refresh`` before each render."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.standbys: list[Standby] = []
        self.failures = 0
        self._read_at = -float("inf")

    async def refresh(self) -> None:
        """Read the standbys again, unless read less than ``READ_EVERY_S`` ago."""
        now = time.monotonic()
        if now - self._read_at < READ_EVERY_S:
            return
        self._read_at = now
        try:
            self.standbys = await asyncio.wait_for(self.store.standbys(), READ_TIMEOUT_S)
        except (StorageError, TimeoutError) as e:
            self.failures += 1
            log.warning("cannot read the database's standbys: %s", e)

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "pyorder_pg_standbys",
            "Standbys the PostgreSQL primary streams to",
            labels=["state", "sync_state"],
        )
        states = collections.Counter((s.state, s.sync_state) for s in self.standbys)
        for (state, sync), n in sorted(states.items()):
            count.add_metric([state, sync], n)
        yield count
        lag = GaugeMetricFamily(
            "pyorder_pg_replication_lag_bytes",
            "WAL the primary wrote and a standby has not replayed yet",
            labels=["standby", "sync_state"],
        )
        replay = GaugeMetricFamily(
            "pyorder_pg_replication_replay_lag_seconds",
            "PostgreSQL's replay_lag of a standby",
            labels=["standby"],
        )
        for s in self.standbys:
            if s.lag_bytes is not None:
                lag.add_metric([s.name, s.sync_state], s.lag_bytes)
            if s.replay_lag_ms is not None:
                replay.add_metric([s.name], s.replay_lag_ms / 1000)
        yield lag
        yield replay
        yield CounterMetricFamily(
            "pyorder_pg_replication_read_failures",
            "Scrapes that could not read the standbys",
            self.failures,
        )
