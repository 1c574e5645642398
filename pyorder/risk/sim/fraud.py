"""The fraud of the window: each scenario's share of the fraud orders that the prevalence
asks for, filled campaign by campaign, and each fraud order's label arrival."""

import random
from collections.abc import Callable

from pyorder.risk.sim.attempts import Attempt
from pyorder.risk.sim.config import SCENARIOS, SimConfig
from pyorder.risk.sim.fraud_accounts import account_farm, promo_abuse, scalper
from pyorder.risk.sim.fraud_cards import account_takeover, card_testing, geo_mismatch
from pyorder.risk.sim.labels import label_at_ms
from pyorder.risk.sim.world import World

Campaign = Callable[[World, SimConfig, random.Random], list[Attempt]]
CAMPAIGNS: dict[str, Campaign] = {
    "card_testing": card_testing,
    "account_farm": account_farm,
    "promo_abuse": promo_abuse,
    "scalper": scalper,
    "account_takeover": account_takeover,
    "geo_mismatch": geo_mismatch,
}
_MAX_CAMPAIGNS = 10_000
"""A bound for a scenario that cannot fill its share (a scalper with no flash sale)."""


def quotas(config: SimConfig, honest_orders: int) -> dict[str, int]:
    """Fraud orders per scenario, so that fraud is ``config.prevalence`` of all orders: the
    total split by ``config.mix`` with the largest remainders rounded up."""
    total = round(config.prevalence / (1.0 - config.prevalence) * honest_orders)
    weight = sum(config.mix.values())
    exact = {s: total * config.mix[s] / weight for s in SCENARIOS}
    share = {s: int(exact[s]) for s in SCENARIOS}
    by_remainder = sorted(SCENARIOS, key=lambda s: (share[s] - exact[s], SCENARIOS.index(s)))
    for s in by_remainder[: total - sum(share.values())]:
        share[s] += 1
    return share


def fraud_attempts(
    world: World, config: SimConfig, rng: random.Random, honest_orders: int
) -> list[Attempt]:
    """The fraud orders of the window (not time-ordered), labelled with their arrival times.
    A share a scenario cannot fill passes to the next one."""
    made: list[Attempt] = []
    carried = 0
    for scenario, quota in quotas(config, honest_orders).items():
        scenario_rng = random.Random(rng.getrandbits(64))
        quota += carried
        got: list[Attempt] = []
        for _ in range(_MAX_CAMPAIGNS):
            if len(got) >= quota:
                break
            for attempt in CAMPAIGNS[scenario](world, config, scenario_rng):
                # A campaign may run past the window's end; it is cut there.
                if len(got) < quota and config.start_ms <= attempt.order.at_ms < config.end_ms:
                    got.append(attempt)
        carried = quota - len(got)
        for attempt in got:
            attempt.label_at_ms = label_at_ms(scenario_rng, config, attempt)
        made.extend(got)
    return made
