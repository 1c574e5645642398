"""Risk control at order intake (``docs/risk.md``, "At intake"): the core's ``RiskEngine`` set
up at start (velocity tracker, model, policy), its policy kept equal to the live one
(``RiskControl.policy``), and what a request says of its client.

Every order is assessed by the order book in the Rust core, in the pass that places it: its
features, its score, the policy's decision (allow; review: held ``in_review`` with its units;
block: refused 422 ``risk_blocked``, nothing reserved) and its three top reasons, staged with
the order and written in the same transaction (``risk_decisions``). No Python object per order.
"""

import functools
import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pyorder._core import RiskEngine, RiskModel
from pyorder.risk.events import AgentClass
from pyorder.risk.policy import Policy
from pyorder.risk.rules import Step, program

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL",
    "FAILURE_OUTCOMES",
    "ClientInfo",
    "Clients",
    "IpRegions",
    "RiskSettings",
    "agent_class",
    "client_ip",
    "load_engine",
    "set_policy",
]

DEFAULT_MODEL: Final = Path(__file__).parent / "models" / "default" / "model.txt"
"""The model the platform ships: trained by ``python -m pyorder.risk.ship`` on the synthetic
data of seed 0 (``pyorder.risk.sim``); see ``docs/risk.md``, "The shipped model"."""

ClientInfo = tuple[str | None, str | None, int, int | None]
"""What ``OrderBook.place_*``'s ``client`` takes: (IP, the IP's region, ``AgentClass``, when
the buyer's account was made in ms or None)."""

FAILURE_OUTCOMES: Final = ("allow", "review", "block")


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """Risk control's configuration (``pyorder-server --risk ...``)."""

    enabled: bool = False
    model: Path | None = DEFAULT_MODEL
    """The LightGBM text model; None: rules and lists only (no score)."""
    on_failure: str = "allow"
    """What an order gets when the configured model cannot be loaded and no rule or list
    decided: ``allow`` (fail open: rules and lists still apply), ``review`` or ``block``
    (fail closed)."""
    review_hold_ms: int = 72 * 3_600_000
    """How long an order held for review keeps its units; unreviewed by then, it expires."""
    trusted_proxies: tuple[str, ...] = ()
    """Networks (CIDR) of proxies whose ``X-Forwarded-For`` is believed."""
    ip_regions: Path | None = None
    """A CSV file of ``network,region`` lines mapping client IPs to the orders' region codes
    (for ``ip_region_mismatch``); None: the IP's region is unknown."""
    max_keys: int = 1_000_000
    """The most keys the tracker keeps per kind (``docs/risk.md``, "Keys and memory")."""
    sample_allowed: float = 0.01
    """The share of allowed orders whose features are kept in a decision row, for a fraud
    report (or its absence, once the order is old enough) to label (``docs/risk.md``, "Fraud
    reports")."""


def load_engine(settings: RiskSettings) -> RiskEngine:
    """The core's engine with the configured model. A model that cannot be read or loaded is
    logged and the engine runs without it, deciding by ``on_failure``."""
    if settings.on_failure not in FAILURE_OUTCOMES:
        raise ValueError(f"on_failure must be one of {FAILURE_OUTCOMES}")
    engine = functools.partial(
        RiskEngine, max_keys=settings.max_keys, sample_allowed=settings.sample_allowed
    )
    if settings.model is None:
        return engine(None)
    try:
        model = RiskModel.from_text(settings.model.read_text(encoding="utf-8"))
        return engine(model)
    except (OSError, ValueError) as e:
        log.error(
            "risk model %s cannot be loaded (%s): orders are decided %s",
            settings.model,
            e,
            "by rules and lists only"
            if settings.on_failure == "allow"
            else f"'{settings.on_failure}' unless a rule or list decides",
        )
        return engine(None, failed=True, on_failure=settings.on_failure)


@functools.lru_cache(maxsize=16_384)
def _program(text: str, names: tuple[str, ...]) -> tuple[Step, ...]:
    return tuple(program(text, names))


def set_policy(engine: RiskEngine, policy: Policy) -> None:
    """Make ``policy`` the engine's (thresholds, rules in their order, lists)."""
    rules = [
        (
            c.rule.id,
            c.rule.action.value,
            None if c.merchant is None else str(c.merchant),
            list(_program(c.rule.when, policy.names)),
        )
        for c in policy.compiled_rules()
    ]
    t = policy.thresholds
    engine.set_policy(
        t.block,
        t.review,
        rules,
        {k.value: sorted(v) for k, v in policy.allow.items()},
        {k.value: sorted(v) for k, v in policy.block.items()},
    )


# --- the client of a request -----------------------------------------------------------------

_HEADLESS = re.compile(
    r"headless|phantomjs|selenium|puppeteer|playwright|curl/|wget/|python-|aiohttp|httpx|"
    r"go-http-client|java/|node-fetch|axios|libwww|scrapy|bot\b|spider|crawler",
    re.IGNORECASE,
)
_APP = re.compile(r"dalvik|cfnetwork|okhttp|pyorder-app", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def agent_class(user_agent: str | None) -> AgentClass:
    """The class of a ``User-Agent``: a headless browser or HTTP library, an app's HTTP stack
    (Android's Dalvik or OkHttp, iOS's CFNetwork), a browser (``Mozilla/``), else unknown."""
    if not user_agent:
        return AgentClass.UNKNOWN
    if _HEADLESS.search(user_agent):
        return AgentClass.HEADLESS
    if _APP.search(user_agent):
        return AgentClass.APP
    if user_agent.startswith("Mozilla/"):
        return AgentClass.BROWSER
    return AgentClass.UNKNOWN


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]
) -> str | None:
    """The client's IP: the peer's, unless the peer is a trusted proxy; then the right-most
    address of ``X-Forwarded-For`` that is not a trusted proxy (each proxy appends the address
    it was reached from, so the addresses to the left of the last untrusted one are the
    client's word, which a client can forge)."""
    if peer is None or not trusted or not forwarded_for:
        return peer
    try:
        if not any(ipaddress.ip_address(peer) in n for n in trusted):
            return peer
    except ValueError:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed hop: believe nothing of the header
        if not any(address in n for n in trusted):
            return str(address)
    return peer


class IpRegions:
    """Client IP → region code, from ``network,region`` lines (longest prefix wins)."""

    def __init__(self, table: Mapping[str, str]) -> None:
        by_length: dict[tuple[int, int], dict[int, str]] = {}
        for cidr, region in table.items():
            n = ipaddress.ip_network(cidr, strict=False)
            by_length.setdefault((n.version, n.prefixlen), {})[int(n.network_address)] = region
        self._lengths = sorted(by_length.items(), key=lambda kv: -kv[0][1])
        self.region = functools.lru_cache(maxsize=65_536)(self._region)

    @classmethod
    def read(cls, path: Path) -> "IpRegions":
        table = {}
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cidr, _, region = (p.strip() for p in line.partition(","))
            if not region:
                raise ValueError(f"{path}:{n}: expected 'network,region', got {line!r}")
            table[cidr] = region
        return cls(table)

    def _region(self, ip: str | None) -> str | None:
        if ip is None:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        bits = 32 if address.version == 4 else 128
        value = int(address)
        for (version, length), networks in self._lengths:
            if version != address.version:
                continue
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            found = networks.get(value & mask)
            if found is not None:
                return found
        return None


@dataclass(frozen=True, slots=True)
class Clients:
    """What the server reads of a request's client (``client_info``)."""

    trusted: tuple[Network, ...] = ()
    regions: IpRegions | None = None

    @classmethod
    def of(cls, settings: RiskSettings) -> "Clients":
        regions = IpRegions.read(settings.ip_regions) if settings.ip_regions else None
        return cls(_networks(settings.trusted_proxies), regions)

    def info(
        self,
        peer: str | None,
        forwarded_for: str | None,
        user_agent: str | None,
        account_created_ms: int | None = None,
    ) -> ClientInfo:
        """The client of a request from its peer address, ``X-Forwarded-For`` and
        ``User-Agent``, and when its buyer's account was made (the token's claim, if any)."""
        ip = client_ip(peer, forwarded_for, self.trusted)
        region = self.regions.region(ip) if self.regions is not None else None
        return (ip, region, int(agent_class(user_agent)), account_created_ms)
