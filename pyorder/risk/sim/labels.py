"""When a fraud order's label arrives: a chargeback days to weeks after a stolen card or a
taken-over account was charged; a merchant's report sooner for promo abuse, scalping and
orders no card paid; for some never."""

import random

from pyorder.risk.sim.attempts import Attempt
from pyorder.risk.sim.config import DAY_MS, SimConfig
from pyorder.risk.sim.draw import lognormal

CHARGEBACK_SCENARIOS = frozenset(
    {"card_testing", "account_farm", "account_takeover", "geo_mismatch"}
)


def label_at_ms(rng: random.Random, config: SimConfig, attempt: Attempt) -> int | None:
    """When the fraud label of ``attempt`` arrives (UTC ms, after the order; it may be after
    the window), or None for the ``config.unlabelled`` share that never gets one."""
    if rng.random() < config.unlabelled:
        return None
    charged = any(p.authorised for p in attempt.payments)
    if attempt.kind in CHARGEBACK_SCENARIOS and charged:
        median = config.chargeback_median_days
    else:
        median = config.review_median_days
    delay_days = max(0.05, lognormal(rng, median, 0.6))
    return attempt.order.at_ms + round(delay_days * DAY_MS)
