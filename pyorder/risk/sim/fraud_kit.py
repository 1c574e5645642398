"""A fraudster's tools, drawn from the same id factory as honest shoppers': fresh accounts,
clients, proxy IPs, drop addresses, stolen card fingerprints."""

import random

from pyorder.risk.events import AgentClass
from pyorder.risk.sim.attempts import Account
from pyorder.risk.sim.config import SimConfig
from pyorder.risk.sim.ids import REGION_NAMES
from pyorder.risk.sim.population import net
from pyorder.risk.sim.world import Device, Net, Place, World

_AGENTS = (AgentClass.HEADLESS, AgentClass.BROWSER, AgentClass.APP)


def new_account(world: World, created_ms: int, phone: str | None = None) -> Account:
    """A fresh account made at ``created_ms`` (its own email hash; the phone given, if any)."""
    return Account(world.ids.buyer(), created_ms, world.ids.hex(), phone)


def client_device(world: World, rng: random.Random, weights: tuple[float, float, float]) -> Device:
    """A device with an agent drawn by ``(headless, browser, app)`` weights."""
    agent = rng.choices(_AGENTS, weights)[0]
    return Device(world.ids.hex(), agent, agent == AgentClass.APP)


def proxy(world: World, rng: random.Random, region: str) -> Net:
    """A fresh IP in the region (a proxy, a data centre, a residential exit node)."""
    return net(world.ids, rng, region)


def drop(world: World, region: str) -> Place:
    """A fresh shipping address in the region (a drop, a reshipper)."""
    return Place(world.ids.hex(), region)


def stolen(world: World) -> str:
    """The fingerprint of a card the shop has not seen."""
    return world.ids.hex()


def region(rng: random.Random, other_than: str | None = None) -> str:
    """A region a fraudster works from (any but ``other_than``)."""
    return rng.choice([r for r in REGION_NAMES if r != other_than])


def start_ms(config: SimConfig, rng: random.Random) -> int:
    """When a campaign starts: any instant of the window (bots keep no office hours)."""
    return rng.randrange(config.start_ms, config.end_ms)
