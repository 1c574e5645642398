"""Fraud that spends other people's money: card testing, account takeover, geo mismatch.
Each function draws one campaign: its orders with their payments, labelled by scenario."""

import random

from pyorder.risk.sim import fraud_kit as kit
from pyorder.risk.sim.attempts import NO_CLIENT, Attempt, Client, account_of, order, payments
from pyorder.risk.sim.config import DAY_MS, MINUTE_MS, SECOND_MS, SimConfig
from pyorder.risk.sim.ids import REGION_NAMES
from pyorder.risk.sim.world import Device, World


def card_testing(world: World, config: SimConfig, rng: random.Random) -> list[Attempt]:
    """A burst of cheap orders from throwaway accounts on one client, each paid by trying
    stolen cards one after another (declines, then mostly one that passes), sometimes
    followed by a costly order with a card that passed. Most testers run a headless client
    from one to three proxy IPs; some rotate the device id or the IP for every order, and
    some send no client context at all."""
    at = kit.start_ms(config, rng)
    ip_region = kit.region(rng)
    accounts = [
        kit.new_account(world, at - rng.randint(10, 3 * 24 * 60) * MINUTE_MS)
        for _ in range(rng.randint(1, 3))
    ]
    device = kit.client_device(world, rng, (0.6, 0.35, 0.05))
    nets = [kit.proxy(world, rng, ip_region) for _ in range(rng.randint(1, 3))]
    rotate_device, rotate_ip = rng.random() < 0.2, rng.random() < 0.3
    # Some call the API with a bare body, as integrations do: no client context at all.
    bare = rng.random() < 0.15
    ship = None if rng.random() < 0.4 else kit.drop(world, rng.choice(REGION_NAMES))
    catalogue = world.catalogue
    made: list[Attempt] = []
    passed: list[str] = []
    for _ in range(rng.randint(3, 12)):
        at += rng.randint(20, 180) * SECOND_MS
        client = (
            NO_CLIENT
            if bare
            else Client(
                Device(world.ids.hex(), device.agent, device.mobile) if rotate_device else device,
                kit.proxy(world, rng, ip_region) if rotate_ip else rng.choice(nets),
            )
        )
        sku = rng.choice(catalogue.cheap)
        placed = order(at, rng.choice(accounts), client, ship, sku, 1, catalogue.prices[sku])
        tries = [(kit.stolen(world), False) for _ in range(rng.randint(2, 12))]
        if rng.random() < 0.7:
            tries[-1] = (tries[-1][0], True)
            passed.append(tries[-1][0])
        paid = payments(rng, placed, tries, (1, 10), (1, 6))
        made.append(Attempt(placed, paid, "card_testing", True))
        at = paid[-1].at_ms
    if passed and rng.random() < 0.5:
        at += rng.randint(5, 120) * MINUTE_MS
        sku, quantity = rng.choice(catalogue.premium), rng.randint(1, 2)
        ship = ship or kit.drop(world, rng.choice(REGION_NAMES))
        placed = order(
            at,
            accounts[0],
            Client(device, rng.choice(nets)),
            ship,
            sku,
            quantity,
            catalogue.prices[sku] * quantity,
        )
        paid = payments(rng, placed, [(rng.choice(passed), True)], (5, 60), (5, 60))
        made.append(Attempt(placed, paid, "card_testing", True))
    return made


def account_takeover(world: World, config: SimConfig, rng: random.Random) -> list[Attempt]:
    """An established account (half a year old or more) used by someone else: a device the
    account never used, mostly from another region than its home, one to three costly
    orders within the hour, mostly to a new address, mostly paid with the account's own
    saved card (so the card's history looks clean)."""
    for _ in range(100):
        victim = rng.choice(world.shoppers)
        if victim.created_ms < config.start_ms - 180 * DAY_MS and not victim.procurement:
            break
    else:
        return []
    at = kit.start_ms(config, rng)
    ip_region = kit.region(rng, victim.region) if rng.random() < 0.8 else victim.region
    client = Client(
        kit.client_device(world, rng, (0.15, 0.75, 0.10)), kit.proxy(world, rng, ip_region)
    )
    r = rng.random()
    if r < 0.15:
        ship = victim.household.place
    else:
        ship = kit.drop(world, victim.region if r < 0.6 else rng.choice(REGION_NAMES))
    card = victim.instruments[0] if rng.random() < 0.75 else kit.stolen(world)
    catalogue = world.catalogue
    made: list[Attempt] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        sku, quantity = rng.choice(catalogue.premium), rng.choice((1, 1, 2))
        placed = order(
            at, account_of(victim), client, ship, sku, quantity, catalogue.prices[sku] * quantity
        )
        tries = (
            [(card, True)] if rng.random() < 0.85 else [(card, False), (kit.stolen(world), True)]
        )
        made.append(
            Attempt(
                placed, payments(rng, placed, tries, (10, 90), (20, 120)), "account_takeover", True
            )
        )
        at += rng.randint(2, 40) * MINUTE_MS
    return made


def geo_mismatch(world: World, config: SimConfig, rng: random.Random) -> list[Attempt]:
    """Stolen cards spent from one region and shipped to a drop in the cards' region: a young
    account (or, for some, an aged one bought in bulk), one to four orders over a day or two,
    mostly a new card each. Some go through a proxy in the shipping region (no mismatch)."""
    at = kit.start_ms(config, rng)
    if rng.random() < 0.3:
        created = at - rng.randint(60, 400) * DAY_MS
    else:
        created = at - rng.randint(60, 20 * 24 * 60) * MINUTE_MS
    account = kit.new_account(world, created, world.ids.hex() if rng.random() < 0.3 else None)
    ip_region = kit.region(rng)
    ship = kit.drop(world, kit.region(rng, ip_region))
    if rng.random() < 0.15:
        ip_region = ship.region
    client = Client(
        kit.client_device(world, rng, (0.1, 0.8, 0.1)), kit.proxy(world, rng, ip_region)
    )
    catalogue = world.catalogue
    card = kit.stolen(world)
    made: list[Attempt] = []
    for _ in range(rng.randint(1, 4)):
        sku = rng.choice(catalogue.premium) if rng.random() < 0.5 else catalogue.popular(rng)
        quantity = rng.choice((1, 1, 2))
        placed = order(at, account, client, ship, sku, quantity, catalogue.prices[sku] * quantity)
        if rng.random() < 0.6:
            card = kit.stolen(world)
        tries = [(card, True)] if rng.random() < 0.8 else [(card, False), (kit.stolen(world), True)]
        made.append(
            Attempt(
                placed, payments(rng, placed, tries, (10, 120), (20, 180)), "geo_mismatch", True
            )
        )
        at += rng.randint(10, 36 * 60) * MINUTE_MS
    return made
