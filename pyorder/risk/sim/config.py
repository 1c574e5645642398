"""The generator's parameters: one frozen value, so that a seed and a ``SimConfig`` name one
data set (the same pair always gives byte-identical output)."""

from dataclasses import dataclass, field

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
SECOND_MS = 1_000

SCENARIOS = (
    "card_testing",
    "account_farm",
    "promo_abuse",
    "scalper",
    "account_takeover",
    "geo_mismatch",
)
"""The named fraud scenarios, in the order they are generated."""

HONEST_KINDS = ("honest", "household", "office", "traveller", "vpn", "gift", "flash_sale")
"""The kinds of honest order: plain, and the hard negatives (an order of several kinds takes
the first of ``flash_sale``, ``gift``, ``traveller``, ``vpn``, ``office``, ``household``)."""


def _default_mix() -> dict[str, float]:
    return {
        "card_testing": 0.15,
        "account_farm": 0.15,
        "promo_abuse": 0.20,
        "scalper": 0.20,
        "account_takeover": 0.15,
        "geo_mismatch": 0.15,
    }


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to generate. Times are UTC milliseconds; rates are per shopper per day."""

    seed: int = 0
    prevalence: float = 0.005
    """The share of orders that are fraud, 0.001 to 0.02 (it is met to the order)."""
    days: int = 14
    start_ms: int = 1_767_225_600_000
    """The first instant of the window (default 2026-01-01T00:00Z): no wall clock is read."""
    shoppers: int = 50_000
    """Honest accounts existing at the start or made during the window."""
    orders_per_shopper_day: float = 0.25
    """The mean rate of an honest shopper's ordinary orders (each shopper's own rate varies)."""
    flash_sales_per_day: float = 1.0
    merchants: int = 200
    skus_per_merchant: int = 20
    mix: dict[str, float] = field(default_factory=_default_mix)
    """The share of fraud orders per scenario (normalised)."""
    unlabelled: float = 0.1
    """The share of fraud orders whose label never arrives (no chargeback, never reviewed)."""
    chargeback_median_days: float = 8.0
    """The median delay of a chargeback (stolen instruments, taken-over accounts)."""
    review_median_days: float = 2.0
    """The median delay of a merchant's report (promo abuse, scalping: no chargeback)."""

    def __post_init__(self) -> None:
        if not 0.001 <= self.prevalence <= 0.02:
            raise ValueError(f"prevalence {self.prevalence} is outside 0.001..0.02")
        if self.days < 1 or self.shoppers < 100:
            raise ValueError("days must be >= 1 and shoppers >= 100")
        if set(self.mix) != set(SCENARIOS) or any(w < 0 for w in self.mix.values()):
            raise ValueError(f"mix must weigh exactly the scenarios {SCENARIOS}")
        if not 0.0 <= self.unlabelled <= 1.0:
            raise ValueError("unlabelled must be within 0..1")

    @property
    def end_ms(self) -> int:
        """The first instant after the window."""
        return self.start_ms + self.days * DAY_MS
