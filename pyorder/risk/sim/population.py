"""The honest population: households at addresses behind home IPs, offices, shoppers with
their devices and instruments, carrier and hotel IP pools per region."""

import math
import random

from pyorder.risk.events import AgentClass
from pyorder.risk.sim.catalogue import build_catalogue
from pyorder.risk.sim.config import DAY_MS, SimConfig
from pyorder.risk.sim.draw import lognormal
from pyorder.risk.sim.ids import REGION_NAMES, REGIONS, Ids
from pyorder.risk.sim.world import Device, Household, Net, Office, Place, Shopper, Trip, World

UNMAPPED_IP_SHARE = 0.015
"""IPs the server's prefix table does not know (their region is None)."""
_HOUSEHOLD_SIZES = ((1, 2, 3, 4, 5), (0.50, 0.27, 0.13, 0.07, 0.03))
_OFFICE_WORKER_SHARE = 0.35
_NEW_ACCOUNT_SHARE = 0.05
_RECENT_ACCOUNT_SHARE = 0.10
_TRAVELLER_SHARE = 0.06
_NEW_PHONE_SHARE = 0.03
_VPN_SHARE = 0.02


def net(ids: Ids, rng: random.Random, region: str) -> Net:
    """A fresh IP in the region (a few are unknown to the prefix table)."""
    return Net(ids.ip(region), None if rng.random() < UNMAPPED_IP_SHARE else region)


def phone(ids: Ids, rng: random.Random) -> Device:
    """A phone: the shop's app, or a mobile browser."""
    return Device(ids.hex(), AgentClass.APP if rng.random() < 0.6 else AgentClass.BROWSER, True)


def build_world(config: SimConfig, rng: random.Random) -> World:
    """The population and catalogue of ``config``, drawn from ``rng``."""
    ids = Ids(random.Random(rng.getrandbits(64)))
    regions = [name for name, _, _ in REGIONS]
    shares = [share for _, _, share in REGIONS]
    shoppers: list[Shopper] = []
    while len(shoppers) < config.shoppers:
        region = rng.choices(regions, shares)[0]
        size = min(rng.choices(*_HOUSEHOLD_SIZES)[0], config.shoppers - len(shoppers))
        household = Household(
            place=Place(ids.hex(), region),
            net=net(ids, rng, region),
            shared_device=(
                Device(ids.hex(), AgentClass.BROWSER) if size > 1 and rng.random() < 0.5 else None
            ),
            size=size,
        )
        shared_card = ids.hex() if size > 1 and rng.random() < 0.25 else None
        for member in range(size):
            shopper = _shopper(config, rng, ids, household)
            if shared_card is not None and member < 2:
                shopper.instruments.insert(0, shared_card)
            shoppers.append(shopper)
            household.members.append(shopper)

    by_region: dict[str, list[Shopper]] = {name: [] for name in REGION_NAMES}
    for shopper in shoppers:
        by_region[shopper.region].append(shopper)
    for region, members in by_region.items():
        _staff_offices(rng, ids, region, members)

    vpn_nets = {r: [net(ids, rng, r) for _ in range(3)] for r in REGION_NAMES}
    for shopper in shoppers:
        if rng.random() < _VPN_SHARE and not shopper.procurement:
            shopper.vpn = rng.choice(vpn_nets[rng.choice(REGION_NAMES)])

    return World(
        ids=ids,
        shoppers=shoppers,
        catalogue=build_catalogue(config, rng),
        # Carrier NAT: an address per 150 shoppers of the region; hotels: one per 400.
        mobile_nets={
            r: [net(ids, rng, r) for _ in range(max(4, len(m) // 150))]
            for r, m in by_region.items()
        },
        hotel_nets={
            r: [net(ids, rng, r) for _ in range(max(3, len(m) // 400))]
            for r, m in by_region.items()
        },
        vpn_nets=vpn_nets,
    )


def _shopper(config: SimConfig, rng: random.Random, ids: Ids, household: Household) -> Shopper:
    r = rng.random()
    if r < _NEW_ACCOUNT_SHARE:
        created = rng.randrange(config.start_ms, config.end_ms - DAY_MS // 2)
    elif r < _NEW_ACCOUNT_SHARE + _RECENT_ACCOUNT_SHARE:
        # Sign-ups keep coming: honest accounts of days and weeks, as farmed ones are.
        created = config.start_ms - rng.randrange(90 * DAY_MS)
    else:
        created = config.start_ms - DAY_MS - int(lognormal(rng, 600, 0.9) * DAY_MS)
    devices: list[Device] = []
    if rng.random() < 0.85:
        devices.append(phone(ids, rng))
    if not devices or rng.random() < 0.75:
        devices.append(Device(ids.hex(), AgentClass.BROWSER))
    sigma = 1.0
    rate = lognormal(rng, config.orders_per_shopper_day * math.exp(-sigma * sigma / 2), sigma)
    shopper = Shopper(
        buyer=ids.buyer(),
        created_ms=created,
        region=household.place.region,
        email_hash=ids.hex(),
        phone_hash=ids.hex() if rng.random() < 0.7 else None,
        household=household,
        devices=devices,
        instruments=[ids.hex() for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))],
        rate_per_day=min(rate, 5.0),
    )
    if rng.random() < _TRAVELLER_SHARE:
        start = rng.randrange(config.start_ms, config.end_ms)
        away = rng.choice([r for r in REGION_NAMES if r != shopper.region])
        shopper.trip = Trip(start, start + rng.randint(2, 8) * DAY_MS, away)
    if rng.random() < _NEW_PHONE_SHARE and any(d.mobile for d in devices):
        shopper.new_phone = (rng.randrange(config.start_ms, config.end_ms), phone(ids, rng))
    return shopper


def _staff_offices(rng: random.Random, ids: Ids, region: str, members: list[Shopper]) -> None:
    """Put about a third of the region's shoppers into offices of heavy-tailed sizes."""
    pool = [s for s in members if rng.random() < _OFFICE_WORKER_SHARE]
    rng.shuffle(pool)
    while pool:
        size = min(len(pool), 3 + int(rng.paretovariate(1.2) * 3), 300)
        staff, pool = pool[:size], pool[size:]
        office = Office(
            place=Place(ids.hex(), region),
            nets=[net(ids, rng, region) for _ in range(1 if rng.random() < 0.8 else 2)],
            shared_devices=(
                [Device(ids.hex(), AgentClass.BROWSER) for _ in range(rng.randint(1, 3))]
                if size >= 10 and rng.random() < 0.4
                else []
            ),
            size=size,
        )
        for shopper in staff:
            shopper.office = office
        if size >= 15 and rng.random() < 0.25:
            script = staff[0]
            script.procurement, script.rate_per_day = True, 1.0
            # One client id per script (a configured integration), none of the person's devices.
            script.devices = [Device(ids.hex(), AgentClass.HEADLESS)]
            script.trip = script.new_phone = None
