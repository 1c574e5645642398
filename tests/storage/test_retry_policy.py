"""The conflict retry policy (``pyorder.storage.retry``): full-jitter waits within their doubling,
capped bounds, and only conflict aborts (40001, 40P01) counted as retryable."""

import random

import asyncpg
import pytest

from pyorder.storage.retry import (
    BASE_DELAY_S,
    MAX_ATTEMPTS,
    MAX_DELAY_S,
    RetryPolicy,
    is_conflict,
)


def test_the_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.005, max_delay_s=0.1)
    ceilings = [policy.ceiling_s(n) for n in range(1, 10)]
    assert ceilings == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1, 0.1])
    assert policy.ceiling_s(10_000) == 0.1  # no overflow however many retries


def test_the_defaults_bound_a_commits_total_wait() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay_s, policy.max_delay_s) == (
        MAX_ATTEMPTS,
        BASE_DELAY_S,
        MAX_DELAY_S,
    )
    total = sum(policy.ceiling_s(n) for n in range(1, policy.max_attempts))
    assert total == pytest.approx(0.075)  # 5 + 10 + 20 + 40 ms, as the module says


def test_a_wait_is_uniform_between_zero_and_its_ceiling() -> None:
    policy = RetryPolicy()
    assert policy.delay_s(3, lambda: 0.0) == 0.0
    assert policy.delay_s(3, lambda: 0.5) == pytest.approx(policy.ceiling_s(3) / 2)
    rng = random.Random(13)
    for retry in range(1, 8):
        waits = [policy.delay_s(retry, rng.random) for _ in range(2000)]
        ceiling = policy.ceiling_s(retry)
        assert all(0.0 <= w < ceiling for w in waits)
        # Full jitter: spread over the whole range, not bunched at its top.
        assert min(waits) < 0.05 * ceiling
        assert max(waits) > 0.95 * ceiling
        assert sum(waits) / len(waits) == pytest.approx(ceiling / 2, rel=0.1)


def test_a_policy_needs_an_attempt_and_numbered_retries() -> None:
    with pytest.raises(ValueError, match="at least one attempt"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="waits >= 0"):
        RetryPolicy(base_delay_s=-0.001)
    with pytest.raises(ValueError, match="numbered from 1"):
        RetryPolicy().ceiling_s(0)


def test_only_conflict_aborts_are_retryable() -> None:
    assert is_conflict(asyncpg.exceptions.SerializationError("40001"))
    assert is_conflict(asyncpg.exceptions.DeadlockDetectedError("40P01"))
    # The outcome of a COMMIT whose connection was lost is unknown: never run it again.
    assert not is_conflict(asyncpg.exceptions.ConnectionDoesNotExistError("lost"))
    assert not is_conflict(asyncpg.exceptions.InterfaceError("closed"))
    assert not is_conflict(ConnectionResetError())
    # Other errors are not resolved by waiting.
    assert not is_conflict(asyncpg.exceptions.UniqueViolationError("23505"))
    assert not is_conflict(asyncpg.exceptions.LockNotAvailableError("55P03"))
