"""Small random draws shared by the behaviours: counts, delays and the time of day at which
people shop. Every draw takes the caller's ``random.Random``; nothing here keeps state."""

import math
import random

from pyorder.risk.sim.config import HOUR_MS, SECOND_MS
from pyorder.risk.sim.ids import UTC_OFFSET_H

# Relative activity of a shopper by local hour (quiet at night, peaks at lunch and evening).
_HOURLY = (
    1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.2, 2.8, 3.2, 3.6,
    4.0, 3.8, 3.5, 3.4, 3.5, 3.8, 4.2, 4.8, 5.0, 4.6, 3.5, 2.0,
)  # fmt: skip
_HOURLY_MAX = max(_HOURLY)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's product method; a rounded normal above a mean of 30)."""
    if mean > 30.0:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    """A log-normal draw given its median (in the caller's units)."""
    return median * math.exp(rng.gauss(0.0, sigma))


def seconds_ms(rng: random.Random, low_s: float, high_s: float) -> int:
    """A uniform delay between ``low_s`` and ``high_s`` seconds, in milliseconds."""
    return round(rng.uniform(low_s, high_s) * SECOND_MS)


def shopping_time(rng: random.Random, region: str, low_ms: int, high_ms: int) -> int:
    """An instant in ``[low_ms, high_ms)`` drawn by the region's local daily rhythm
    (rejection sampling against the hourly profile)."""
    offset_ms = UTC_OFFSET_H[region] * HOUR_MS
    while True:
        at = rng.randrange(low_ms, high_ms)
        hour = ((at + offset_ms) // HOUR_MS) % 24
        if rng.random() * _HOURLY_MAX < _HOURLY[hour]:
            return at


def local_hour(region: str, at_ms: int) -> int:
    """The hour of the day (0-23) at ``at_ms`` in the region."""
    return int(((at_ms + UTC_OFFSET_H[region] * HOUR_MS) // HOUR_MS) % 24)


def local_weekday(region: str, at_ms: int) -> int:
    """The day of the week at ``at_ms`` in the region, 0 = Monday (the epoch was a Thursday)."""
    return int(((at_ms + UTC_OFFSET_H[region] * HOUR_MS) // (24 * HOUR_MS) + 3) % 7)
