"""The clock and the time formats: ms since the Unix epoch (UTC) in, ISO 8601 out."""

import time
from datetime import UTC, datetime
from functools import lru_cache


def now_ms() -> int:
    """Milliseconds since the Unix epoch, UTC."""
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=4096)
def iso_ms(ms: int) -> str:
    """UTC ISO 8601 with milliseconds and a Z, of ms since the Unix epoch (cached: the events
    and answers of one batch share a time)."""
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def datetime_ms(at: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime (any offset)."""
    return int(at.timestamp() * 1000)
