"""Fraud by many accounts: account farms, promo abuse, scalper bots at a flash sale. Each
function draws one campaign: its orders with their payments, labelled by scenario."""

import random

from pyorder.risk.events import AgentClass
from pyorder.risk.sim import fraud_kit as kit
from pyorder.risk.sim.attempts import Account, Attempt, Client, order, payments
from pyorder.risk.sim.config import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, SimConfig
from pyorder.risk.sim.ids import REGIONS
from pyorder.risk.sim.world import Device, Place, World


def account_farm(world: World, config: SimConfig, rng: random.Random) -> list[Attempt]:
    """Eight to thirty accounts made within two days, run from one to four devices (emulated
    phones, browsers) and verified with a few reused phone numbers, each placing one to three
    orders of resellable goods over five days with its own stolen card, to a few drops.
    Most farms rotate residential proxies (a new IP per order); the rest keep a few IPs."""
    start = kit.start_ms(config, rng)
    home = kit.region(rng)
    born = start - rng.randint(12, 30 * 24) * HOUR_MS
    devices = [kit.client_device(world, rng, (0.05, 0.5, 0.45)) for _ in range(rng.randint(1, 4))]
    phones = [world.ids.hex() for _ in range(rng.randint(1, 3))]
    nets = [kit.proxy(world, rng, home) for _ in range(rng.randint(1, 3))]
    rotate = rng.random() < 0.6
    drops = [kit.drop(world, home) for _ in range(rng.randint(2, 5))]
    catalogue = world.catalogue
    made: list[Attempt] = []
    for i in range(rng.randint(8, 30)):
        phone = rng.choice(phones) if rng.random() < 0.85 else None
        account = kit.new_account(world, born + rng.randrange(min(2 * DAY_MS, start - born)), phone)
        if rng.random() < 0.85:
            device = devices[i % len(devices)]
        else:
            device = kit.client_device(world, rng, (0.05, 0.5, 0.45))
        card = kit.stolen(world)
        for _ in range(rng.choice((1, 1, 2, 3))):
            at = start + rng.randrange(5 * DAY_MS)
            client = Client(device, kit.proxy(world, rng, home) if rotate else rng.choice(nets))
            sku = rng.choice(catalogue.premium) if rng.random() < 0.4 else catalogue.popular(rng)
            quantity = rng.choice((1, 1, 2))
            placed = order(
                at,
                account,
                client,
                rng.choice(drops),
                sku,
                quantity,
                catalogue.prices[sku] * quantity,
            )
            tries = (
                [(card, True)] if rng.random() < 0.8 else [(card, False), (kit.stolen(world), True)]
            )
            made.append(
                Attempt(
                    placed, payments(rng, placed, tries, (10, 120), (20, 180)), "account_farm", True
                )
            )
    return made


def promo_abuse(world: World, config: SimConfig, rng: random.Random) -> list[Attempt]:
    """One person taking the new-account discount five to twenty-five times: each account made
    minutes before its only order, a cheap item at half price, all shipped to one address (or
    two or three spellings of it), from home or from a phone on the carrier's shared IPs; one
    browser throughout, or a fresh cookie (device id) per account; often one own card."""
    at = kit.start_ms(config, rng)
    home = rng.choices([name for name, _, _ in REGIONS], [share for _, _, share in REGIONS])[0]
    spellings = 1 if rng.random() < 0.7 else rng.randint(2, 3)
    places = [Place(world.ids.hex(), home) for _ in range(spellings)]
    app = rng.random() < 0.2
    first = Device(world.ids.hex(), AgentClass.APP if app else AgentClass.BROWSER, app)
    same_device, on_mobile = rng.random() < 0.4, rng.random() < 0.5
    home_net = kit.proxy(world, rng, home)
    card = kit.stolen(world) if rng.random() < 0.5 else None
    phone = world.ids.hex() if rng.random() < 0.2 else None
    catalogue = world.catalogue
    made: list[Attempt] = []
    for _ in range(rng.randint(5, 25)):
        at += rng.randint(5, 8 * 60) * MINUTE_MS
        account = kit.new_account(world, at - rng.randint(1, 60) * MINUTE_MS, phone)
        device = first if same_device else Device(world.ids.hex(), first.agent, first.mobile)
        net = rng.choice(world.mobile_nets[home]) if on_mobile else home_net
        sku = rng.choice(catalogue.cheap) if rng.random() < 0.5 else catalogue.popular(rng)
        placed = order(
            at, account, Client(device, net), rng.choice(places), sku, 1, catalogue.prices[sku] // 2
        )
        tries = [(card or kit.stolen(world), True)]
        made.append(
            Attempt(placed, payments(rng, placed, tries, (10, 90), (20, 120)), "promo_abuse", True)
        )
    return made


def scalper(world: World, config: SimConfig, rng: random.Random) -> list[Attempt]:
    """A bot operation at one flash sale: ten to forty accounts made in advance, each ordering
    the limit (mostly) within seconds of the release, to one to three reshippers. Two in
    three run headless clients (no device id, or a fresh one per account) from a few data
    centre IPs; the rest drive real browsers on a few devices (slower, seconds). Four in ten
    rotate residential proxies instead (an IP per order). Prepaid cards shared by accounts."""
    sales = world.catalogue.flash_sales
    if not sales:
        return []
    sale = rng.choice(sales)
    headless = rng.random() < 0.65
    home = kit.region(rng)
    browsers = [Device(world.ids.hex(), AgentClass.BROWSER) for _ in range(rng.randint(1, 3))]
    fresh_ids = rng.random() < 0.5
    nets = [kit.proxy(world, rng, home) for _ in range(rng.randint(1, 4))]
    rotate = rng.random() < 0.4
    drops = [
        kit.drop(world, home if rng.random() < 0.5 else kit.region(rng))
        for _ in range(rng.randint(1, 3))
    ]
    accounts = rng.randint(10, 40)
    cards = [kit.stolen(world) for _ in range(max(1, accounts // 3))]
    born = sale.release_ms - rng.randint(1, 120) * DAY_MS
    made: list[Attempt] = []
    for i in range(accounts):
        account: Account = kit.new_account(world, born + rng.randrange(DAY_MS // 2))
        if headless:
            device = Device(world.ids.hex() if fresh_ids else None, AgentClass.HEADLESS)
        else:
            device = rng.choice(browsers)
        for _ in range(1 if rng.random() < 0.8 else 2):
            delay_s = 0.15 + rng.expovariate(1 / 1.2) if headless else 1.0 + rng.expovariate(1 / 4)
            at = sale.release_ms + round(delay_s * SECOND_MS)
            ship = rng.choice(drops)
            client = Client(
                device, kit.proxy(world, rng, ship.region) if rotate else rng.choice(nets)
            )
            quantity = sale.limit if rng.random() < 0.8 else 1
            placed = order(
                at,
                account,
                client,
                ship,
                sale.sku,
                quantity,
                sale.price * quantity,
                sale.release_ms,
            )
            paid = payments(rng, placed, [(cards[i % len(cards)], True)], (1, 10), (1, 10))
            made.append(Attempt(placed, paid, "scalper", True))
    return made
