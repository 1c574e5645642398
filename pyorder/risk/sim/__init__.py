"""A seeded agent-based generator of shoppers, their orders and payments, and fraud
(``docs/risk.md``, "Synthetic data").

The events are ``pyorder.risk.events``'s schema and nothing else; the truth about each order
(fraud or not, the scenario or honest kind, when its label arrives) lives apart, in
``Simulation.labels``. The same configuration (seed included) gives the same data, byte for
byte on disk. Run it with ``python -m pyorder.risk.sim``.
"""

from pyorder.risk.sim.config import HONEST_KINDS, SCENARIOS, SimConfig
from pyorder.risk.sim.simulate import simulate
from pyorder.risk.sim.store import load, write
from pyorder.risk.sim.stream import Labels, Simulation

__all__ = [
    "HONEST_KINDS",
    "SCENARIOS",
    "Labels",
    "SimConfig",
    "Simulation",
    "load",
    "simulate",
    "write",
]
