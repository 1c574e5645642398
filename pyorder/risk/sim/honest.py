"""Honest shoppers' orders: ordinary shopping by each shopper's own rate and daily rhythm, and
the fans of each flash sale. The hard negatives come out of this behaviour: households and
offices behind one IP (some sharing a device), phones behind carrier NAT, travellers online
abroad, VPN users, gifts to new addresses, fast fans at a release, an office's purchasing
script."""

import random

from pyorder.risk.events import AgentClass
from pyorder.risk.sim.attempts import NO_CLIENT, Attempt, Client, account_of, order, payments
from pyorder.risk.sim.config import DAY_MS, MINUTE_MS, SECOND_MS, SimConfig
from pyorder.risk.sim.draw import local_hour, local_weekday, lognormal, poisson, shopping_time
from pyorder.risk.sim.ids import REGION_NAMES
from pyorder.risk.sim.world import Device, FlashSale, Place, Shopper, World

NO_CONTEXT_SHARE = 0.03
"""Orders whose body has no client context (an integration, an old client)."""
GIFT_SHARE = 0.04
FLASH_FAN_SHARE = 0.006
"""The share of shoppers who try to buy at a given flash sale."""
_QUANTITIES = ((1, 2, 3, 4), (80, 14, 4, 2))


def honest_attempts(world: World, config: SimConfig, rng: random.Random) -> list[Attempt]:
    """Every honest order of the window, with its payments (not time-ordered)."""
    made: list[Attempt] = []
    for shopper in world.shoppers:
        _ordinary(world, config, rng, shopper, made)
    for sale in world.catalogue.flash_sales:
        _flash_sale(world, config, rng, sale, made)
    return made


def _ordinary(
    world: World, config: SimConfig, rng: random.Random, shopper: Shopper, made: list[Attempt]
) -> None:
    """The shopper's ordinary orders over the window (from a minute after sign-up)."""
    low = max(config.start_ms, shopper.created_ms + MINUTE_MS)
    if low >= config.end_ms:
        return
    count = poisson(rng, shopper.rate_per_day * (config.end_ms - low) / DAY_MS)
    times = sorted(shopping_time(rng, shopper.region, low, config.end_ms) for _ in range(count))
    new_account = shopper.created_ms >= config.start_ms
    if new_account and times and rng.random() < 0.4:
        # Many sign up in order to buy: the first order minutes after the account.
        times[0] = min(times[0], shopper.created_ms + rng.randint(1, 30) * MINUTE_MS)
    catalogue = world.catalogue
    for i, at in enumerate(times):
        client, kind = client_at(world, rng, shopper, at)
        ship: Place | None = shopper.household.place
        quantity = rng.choices(*_QUANTITIES)[0]
        sku = catalogue.popular(rng)
        if shopper.procurement:
            ship, quantity = shopper.office.place if shopper.office else ship, rng.randint(2, 10)
        elif rng.random() < 0.02:
            ship = None  # digital goods: nothing to ship
        elif rng.random() < GIFT_SHARE:
            kind, quantity = "gift", 1
            region = shopper.region
            if rng.random() < 0.25:
                region = rng.choice([r for r in REGION_NAMES if r != shopper.region])
            ship = Place(world.ids.hex(), region)
            if rng.random() < 0.6:
                sku = rng.choice(catalogue.premium)
        elif kind == "office" and shopper.office and rng.random() < 0.35:
            ship = shopper.office.place
        amount = catalogue.prices[sku] * quantity
        if new_account and i == 0:
            amount //= 2  # the first-order discount every new account gets
        placed = order(at, account_of(shopper), client, ship, sku, quantity, amount)
        tries = _tries(rng, shopper)
        made.append(Attempt(placed, payments(rng, placed, tries, (5, 120), (15, 300)), kind, False))


def _flash_sale(
    world: World, config: SimConfig, rng: random.Random, sale: FlashSale, made: list[Attempt]
) -> None:
    """The fans of one release: a quarter are on the page at the release and click within
    seconds, the rest come minutes to hours later; one order each, by their usual client (a
    few with an auto-checkout script), now and then a household member's order with it."""
    fans = min(len(world.shoppers), poisson(rng, len(world.shoppers) * FLASH_FAN_SHARE))
    for shopper in rng.sample(world.shoppers, fans):
        if shopper.created_ms >= sale.release_ms or shopper.procurement:
            continue
        r = rng.random()
        if r < 0.25:
            delay_s = 0.8 + rng.expovariate(1 / 12)
        elif r < 0.7:
            delay_s = lognormal(rng, 240, 1.0)
        else:
            delay_s = lognormal(rng, 3 * 3_600, 1.0)
        at = sale.release_ms + round(delay_s * SECOND_MS)
        _fan_order(world, config, rng, sale, shopper, at, made)
        if shopper.household.size > 1 and rng.random() < 0.15:
            # A partner or flatmate buys one too, minutes later: one IP, one address, two buyers.
            partner = rng.choice(shopper.household.members)
            if partner is not shopper and partner.created_ms < at and not partner.procurement:
                _fan_order(
                    world, config, rng, sale, partner, at + rng.randint(5, 300) * SECOND_MS, made
                )


def _fan_order(
    world: World,
    config: SimConfig,
    rng: random.Random,
    sale: FlashSale,
    shopper: Shopper,
    at: int,
    made: list[Attempt],
) -> None:
    """One fan's order of the release at ``at`` (none after the window)."""
    if at >= config.end_ms:
        return
    client, _ = client_at(world, rng, shopper, at)
    if client.net is not None and rng.random() < 0.015:
        client = Client(Device(None, AgentClass.HEADLESS), client.net)
    quantity = 1 if rng.random() < 0.85 else min(2, sale.limit)
    ship = shopper.household.place
    placed = order(
        at,
        account_of(shopper),
        client,
        ship,
        sale.sku,
        quantity,
        sale.price * quantity,
        sale.release_ms,
    )
    tries = _tries(rng, shopper)
    made.append(
        Attempt(placed, payments(rng, placed, tries, (5, 60), (10, 120)), "flash_sale", False)
    )


def client_at(world: World, rng: random.Random, shopper: Shopper, at: int) -> tuple[Client, str]:
    """The device and network the shopper orders from at an instant, and the honest kind this
    makes the order (``traveller``, ``vpn``, ``office``, ``household`` or ``honest``)."""
    office = shopper.office
    if shopper.procurement and office is not None:
        return Client(shopper.devices[0], rng.choice(office.nets)), "office"
    if rng.random() < NO_CONTEXT_SHARE:
        return NO_CLIENT, "honest"
    devices = shopper.devices_at(at)
    trip = shopper.trip
    if trip is not None and trip.start_ms <= at < trip.end_ms:
        device = rng.choice(devices)
        if device.mobile and rng.random() < 0.3:
            # Roaming data leaves through the home carrier: the IP is at home.
            return Client(device, rng.choice(world.mobile_nets[shopper.region])), "honest"
        return Client(device, rng.choice(world.hotel_nets[trip.region])), "traveller"
    if shopper.vpn is not None and rng.random() < 0.9:
        return Client(rng.choice(devices), shopper.vpn), "vpn"
    region = shopper.region
    if (
        office is not None
        and local_weekday(region, at) < 5
        and 9 <= local_hour(region, at) < 18
        and rng.random() < 0.6
    ):
        shared = office.shared_devices
        device = rng.choice(shared) if shared and rng.random() < 0.2 else rng.choice(devices)
        return Client(device, rng.choice(office.nets)), "office"
    household = shopper.household
    family = household.shared_device
    device = family if family is not None and rng.random() < 0.25 else rng.choice(devices)
    if device.mobile and rng.random() < 0.5:
        return Client(device, rng.choice(world.mobile_nets[region])), "honest"
    return Client(device, household.net), "household" if household.size > 1 else "honest"


def _tries(rng: random.Random, shopper: Shopper) -> list[tuple[str, bool]]:
    """An honest checkout's authorisations: nearly always one that passes; after a decline
    (funds, an expired card) another card, the same again, or giving up; a few never pay."""
    r = rng.random()
    if r < 0.03:
        return []
    first = shopper.instruments[0] if rng.random() < 0.85 else rng.choice(shopper.instruments)
    if r < 0.96:
        return [(first, True)]
    others = [i for i in shopper.instruments if i != first]
    r = rng.random()
    if r < 0.5 and others:
        return [(first, False), (rng.choice(others), True)]
    if r < 0.75:
        return [(first, False), (first, rng.random() < 0.5)]
    return [(first, False)]
