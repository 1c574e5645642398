"""Opaque identifiers (devices, IPs, addresses, hashes, instruments, buyers), drawn alike for
honest shoppers and fraudsters: nothing in an id tells who made it."""

import random
from dataclasses import dataclass, field

REGIONS: tuple[tuple[str, int, float], ...] = (
    # name, UTC offset in hours (for the shoppers' day), share of the honest population
    ("us-east", -5, 0.20),
    ("us-west", -8, 0.12),
    ("br", -3, 0.06),
    ("uk", 0, 0.10),
    ("eu-west", 1, 0.16),
    ("eu-central", 1, 0.12),
    ("ng", 1, 0.03),
    ("in", 5, 0.07),
    ("sg", 8, 0.05),
    ("jp", 9, 0.05),
    ("au", 10, 0.04),
)
REGION_NAMES = tuple(name for name, _, _ in REGIONS)
UTC_OFFSET_H = {name: offset for name, offset, _ in REGIONS}


@dataclass(slots=True)
class Ids:
    """Draws unique opaque ids from its own random stream."""

    rng: random.Random
    _ips: set[str] = field(default_factory=set)
    _buyers: set[int] = field(default_factory=set)

    def hex(self) -> str:
        """16 hex digits: device ids, email and phone hashes, instruments, address keys."""
        return f"{self.rng.getrandbits(64):016x}"

    def buyer(self) -> int:
        """A buyer id: random, so that it says nothing of when or by whom the account was made."""
        while True:
            buyer = self.rng.getrandbits(40)
            if buyer not in self._buyers:
                self._buyers.add(buyer)
                return buyer

    def ip(self, region: str) -> str:
        """A fresh IPv4 address in one of the region's prefixes (each region owns first octets
        ``10 * i + 11 .. 10 * i + 18``, as the server's prefix table would map them)."""
        first = 11 + 10 * REGION_NAMES.index(region)
        while True:
            bits = self.rng.getrandbits(27)
            ip = f"{first + (bits >> 24)}.{(bits >> 16) & 255}.{(bits >> 8) & 255}.{bits & 255}"
            if ip not in self._ips:
                self._ips.add(ip)
                return ip
