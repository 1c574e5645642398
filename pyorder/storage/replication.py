"""The primary's view of its streaming standbys (``pg_stat_replication``), for ``/metrics``
and alerts (``docs/operations.md``, "What to alert on").

Lags are the primary's: the WAL bytes a standby has not replayed yet, and PostgreSQL's own
replay lag (the time between a commit's WAL being written and the standby reporting it
replayed; 0 when idle). Reading them takes the ``pg_read_all_stats`` role (or a superuser);
without it PostgreSQL shows the rows with their figures hidden, read here as unknown."""

from dataclasses import dataclass

STANDBYS_SQL = (
    "SELECT COALESCE(application_name, ''), COALESCE(state, ''), COALESCE(sync_state, ''),"
    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
    " (EXTRACT(epoch FROM replay_lag) * 1000)::bigint"
    " FROM pg_stat_replication ORDER BY application_name"
)


@dataclass(frozen=True, slots=True)
class Standby:
    """One standby as the primary sees it."""

    name: str
    """Its ``application_name`` (what ``synchronous_standby_names`` lists)."""
    state: str
    """``streaming``, ``catchup``, ``startup`` or ``backup``."""
    sync_state: str
    """``sync``, ``potential``, ``quorum`` or ``async``."""
    lag_bytes: int | None
    """WAL written on the primary and not replayed on the standby (None: hidden)."""
    replay_lag_ms: int | None
    """PostgreSQL's ``replay_lag`` (None: hidden, or no commit since the standby caught up)."""


def standby_from_row(row: tuple[object, ...]) -> Standby:
    name, state, sync, lag, replay = row
    return Standby(
        str(name),
        str(state),
        str(sync),
        None if lag is None else int(str(lag)),
        None if replay is None else int(str(replay)),
    )
