"""One data set from one configuration: the world, the honest orders, the fraud, the stream."""

import random

from pyorder.risk.sim.config import SimConfig
from pyorder.risk.sim.fraud import fraud_attempts
from pyorder.risk.sim.honest import honest_attempts
from pyorder.risk.sim.population import build_world
from pyorder.risk.sim.stream import Simulation, assemble


def simulate(config: SimConfig) -> Simulation:
    """Generate the data set of ``config`` (deterministic: each part draws from its own
    stream seeded from ``config.seed``)."""
    rng = random.Random(config.seed)
    world = build_world(config, random.Random(rng.getrandbits(64)))
    honest = honest_attempts(world, config, random.Random(rng.getrandbits(64)))
    fraud = fraud_attempts(world, config, random.Random(rng.getrandbits(64)), len(honest))
    return assemble(config, honest + fraud)
