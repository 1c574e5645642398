"""When a PostgreSQL transaction aborted by a conflict is run again, and how long to wait first.

Once several nodes write the same rows, PostgreSQL may abort a transaction to resolve a
conflict: SQLSTATE 40001 ``serialization_failure`` (asyncpg's ``SerializationError``) or 40P01
``deadlock_detected`` (``DeadlockDetectedError``). Both are the server's answer that the
transaction was rolled back whole, whether it came from a statement or from COMMIT itself, so
running it again from the start cannot apply anything twice. Nothing else is retried here: a
connection lost while COMMIT was in flight leaves the outcome unknown (the caller reads the
batch's token back), and any other error is not a conflict that waiting resolves.

The wait is "full jitter" exponential backoff: before retry ``n`` (1, 2, ...) a uniform random
time in ``[0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (n - 1))]``, so writers that collided do
not collide again in step. With the defaults a commit is tried ``MAX_ATTEMPTS`` = 5 times and
waits at most 5 + 10 + 20 + 40 = 75 ms in all between attempts (a deadlock itself takes the
server's ``deadlock_timeout``, 1 s by default, to be detected).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

MAX_ATTEMPTS = 5
"""Tries of one transaction in all (the first and up to 4 retries) before giving up."""
BASE_DELAY_S = 0.005
"""Upper bound of the wait before the first retry, seconds; it doubles for each retry after."""
MAX_DELAY_S = 0.1
"""Cap on the upper bound of any one wait, seconds."""

CONFLICTS: tuple[type[asyncpg.PostgresError], ...] = (
    asyncpg.exceptions.SerializationError,  # 40001
    asyncpg.exceptions.DeadlockDetectedError,  # 40P01
)
"""The errors after which the transaction is known to have rolled back and may run again."""


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` is a conflict abort (40001 or 40P01): rolled back, worth a retry."""
    return isinstance(error, CONFLICTS)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times a conflicting transaction is tried, and the waits between tries."""

    max_attempts: int = MAX_ATTEMPTS
    base_delay_s: float = BASE_DELAY_S
    max_delay_s: float = MAX_DELAY_S

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"a retry policy needs at least one attempt and waits >= 0: {self}")

    def ceiling_s(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (1 for the first), seconds."""
        if retry < 1:
            raise ValueError(f"retries are numbered from 1, got {retry}")
        # The exponent is bounded so that a large retry number cannot overflow the float.
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(retry - 1, 64))

    def delay_s(self, retry: int, uniform: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry``: ``uniform()`` (in [0, 1)) times its ceiling."""
        return uniform() * self.ceiling_s(retry)
