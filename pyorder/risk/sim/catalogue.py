"""Merchants' SKUs with prices and popularity, and the flash-sale releases of the window."""

import itertools
import random

from pyorder.risk.sim.config import DAY_MS, HOUR_MS, SimConfig
from pyorder.risk.sim.draw import lognormal
from pyorder.risk.sim.world import Catalogue, FlashSale


def _price(rng: random.Random, median: float, sigma: float) -> int:
    """A shelf price in minor units, ending in 99."""
    return max(199, int(lognormal(rng, median, sigma)) // 100 * 100 + 99)


def build_catalogue(config: SimConfig, rng: random.Random) -> Catalogue:
    """The catalogue: ``merchants * skus_per_merchant`` ordinary SKUs with Zipf popularity and
    ``round(flash_sales_per_day * days)`` flash-sale SKUs released on the hour, 08-20 UTC."""
    count = config.merchants * config.skus_per_merchant
    skus = list(range(1, count + 1))
    prices = {sku: _price(rng, 3_500, 0.9) for sku in skus}
    ranked = skus[:]
    rng.shuffle(ranked)
    popularity = {sku: 1.0 / (rank + 1) ** 0.9 for rank, sku in enumerate(ranked)}
    by_price = sorted(skus, key=lambda s: (prices[s], s))
    decile = max(1, count // 10)

    sales: list[FlashSale] = []
    n_sales = round(config.flash_sales_per_day * config.days)
    for i in range(n_sales):
        day = i * config.days // max(1, n_sales)
        release = config.start_ms + day * DAY_MS + rng.randint(8, 20) * HOUR_MS
        sku = count + 1 + i
        price = _price(rng, 20_000, 0.5)
        prices[sku] = price
        sales.append(FlashSale(sku, release, price, rng.choice((1, 2, 2, 4))))

    return Catalogue(
        prices=prices,
        skus=skus,
        cum_weights=list(itertools.accumulate(popularity[s] for s in skus)),
        premium=by_price[-decile:],
        cheap=by_price[:decile],
        flash_sales=sales,
    )
