"""Which payment providers there are, and how to reach them: configuration, the router that picks
one for a payment method, and a circuit breaker per provider.

A provider is configured by name, base URL, API key, webhook secret, the methods it takes and a
priority (lower first). On the command line one provider is one comma-separated spec, methods
joined by ``+``::

    name=card1,url=http://127.0.0.1:9101,secret=whsec_1,methods=card+wallet,priority=0

or a JSON file: ``{"providers": [{"name": ..., "url": ..., "secret": ..., "methods": [...]}],
"timeout_ms": 100, ...}`` (the fields of ``ProviderConfig`` and ``PaymentsConfig``).
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from pyorder.documents import config_error

METHODS = ("card", "wallet", "bank_transfer")
DEFAULT_PAYMENT_METHOD = {
    "card": "pm_card_visa",
    "wallet": "pm_wallet",
    "bank_transfer": "pm_bank_transfer",
}
"""The provider payment method used when the buyer names none (the sandbox's test methods)."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    url: str
    secret: str
    """The webhook signing secret shared with the provider."""
    methods: tuple[str, ...]
    api_key: str | None = None
    priority: int = 0
    """Lower is tried first among the providers of a method."""
    timeout_ms: int | None = None
    """Per-call timeout; None: ``PaymentsConfig.timeout_ms``."""


@dataclass(frozen=True, slots=True)
class PaymentsConfig:
    providers: tuple[ProviderConfig, ...] = ()
    timeout_ms: int = 100
    """How long a provider has to answer one call before it counts as failed (ms)."""
    breaker_threshold: int = 3
    """Consecutive failures that open a provider's circuit."""
    breaker_cooldown_s: float = 5.0
    """How long an open circuit stays open before one probe call is let through."""
    reconcile_interval_s: float = 5.0
    """How often attempts and refunds left unsettled are looked up at their provider."""
    retry_max_s: float = 2.0
    """Longest wait between two tries of an outbox call whose outcome is unknown."""


Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""A provider's name: part of its webhook URL and stored with each attempt."""
HttpUrl = Annotated[str, Meta(max_length=2048, pattern=r"^https?://[^\s\x00]+$")]
Secret = Annotated[str, Meta(min_length=1, max_length=512, pattern=r"^[^\s\x00]+$")]
Millis = Annotated[int, Meta(ge=1, le=600_000, description="ms")]
Seconds = Annotated[float, Meta(gt=0, le=86_400, description="s")]


class _ProviderDoc(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One provider as configured (JSON file or command-line spec)."""

    name: Name
    url: HttpUrl
    secret: Secret
    methods: Annotated[list[Literal["card", "wallet", "bank_transfer"]], Meta(min_length=1)]
    api_key: Secret | None = None
    priority: Annotated[int, Meta(ge=-1_000_000, le=1_000_000)] = 0
    timeout_ms: Millis | None = None


class _PaymentsDoc(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The payment config file."""

    providers: list[_ProviderDoc] = []
    timeout_ms: Millis = 100
    breaker_threshold: Annotated[int, Meta(ge=1, le=1_000_000)] = 3
    breaker_cooldown_s: Seconds = 5.0
    reconcile_interval_s: Seconds = 5.0
    retry_max_s: Seconds = 2.0


def parse_provider(spec: str) -> ProviderConfig:
    """A ``ProviderConfig`` from ``name=..,url=..,secret=..,methods=a+b[,api_key=..]
    [,priority=N][,timeout_ms=N]``; ValueError naming the field that is missing, unknown or
    wrong."""
    values: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise ValueError(f"provider spec entries are key=value: {item!r}")
        values[key.strip()] = value.strip()
    raw: dict[str, Any] = dict(values)
    if "methods" in raw:
        raw["methods"] = [m for m in values["methods"].replace("|", "+").split("+") if m]
    return provider_from_dict(raw, strict=False)


def provider_from_dict(raw: object, *, strict: bool = True) -> ProviderConfig:
    """A ``ProviderConfig`` from a parsed JSON object (``strict=False``: numbers may be
    given as text, as on the command line); ValueError naming the field."""
    if isinstance(raw, dict):
        unknown = set(raw) - {f.name for f in fields(ProviderConfig)}
        if unknown:
            raise ValueError(f"unknown provider fields: {', '.join(sorted(unknown))}")
        for required in ("name", "url", "secret", "methods"):
            if not raw.get(required):
                raise ValueError(f"a provider needs {required}")
        given = raw["methods"]
        bad = [m for m in given if m not in METHODS] if isinstance(given, list) else []
        if bad:
            raise ValueError(f"unknown payment methods {bad}; known: {', '.join(METHODS)}")
    try:
        doc = msgspec.convert(raw, _ProviderDoc, strict=strict)
    except msgspec.ValidationError as exc:
        raise config_error(exc, "provider ") from None
    return _provider(doc)


def _provider(doc: _ProviderDoc) -> ProviderConfig:
    return ProviderConfig(
        name=doc.name,
        url=doc.url.rstrip("/"),
        secret=doc.secret,
        methods=tuple(doc.methods),
        api_key=doc.api_key or None,
        priority=doc.priority,
        timeout_ms=doc.timeout_ms,
    )


def load_config(path: Path, extra: Sequence[ProviderConfig] = ()) -> PaymentsConfig:
    """A ``PaymentsConfig`` from a JSON file, with ``extra`` providers added; ValueError naming
    the file and the field (``providers[0].timeout_ms``) that is wrong."""
    try:
        doc = msgspec.json.decode(path.read_bytes(), type=_PaymentsDoc)
    except msgspec.ValidationError as exc:
        raise config_error(exc, f"{path}: ") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not a JSON payment config: {exc}") from None
    names = [p.name for p in doc.providers] + [p.name for p in extra]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{path}: providers: the name {twice[0]!r} is used twice")
    return PaymentsConfig(
        providers=tuple(_provider(p) for p in doc.providers) + tuple(extra),
        timeout_ms=doc.timeout_ms,
        breaker_threshold=doc.breaker_threshold,
        breaker_cooldown_s=doc.breaker_cooldown_s,
        reconcile_interval_s=doc.reconcile_interval_s,
        retry_max_s=doc.retry_max_s,
    )


class CircuitBreaker:
    """Closed: calls go through. After ``threshold`` consecutive failures it opens: calls are
    refused at once for ``cooldown_s``; then it is half-open: one probe goes through, and its
    success closes the circuit, its failure opens it again."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def available(self) -> bool:
        """Whether a call would be let through now (without taking the probe)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def allow(self) -> bool:
        """Let one call through, or not; in half-open state only one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = self._clock()


@dataclass
class Router:
    """The providers of each method in priority order, each with its breaker."""

    config: PaymentsConfig
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in self.config.providers:
            self.breakers[p.name] = CircuitBreaker(
                self.config.breaker_threshold, self.config.breaker_cooldown_s
            )

    def provider(self, name: str) -> ProviderConfig | None:
        for p in self.config.providers:
            if p.name == name:
                return p
        return None

    def candidates(self, method: str, exclude: Sequence[str] = ()) -> list[ProviderConfig]:
        """Providers of ``method`` not in ``exclude``: those whose circuit lets calls through
        first, each group by priority (then name)."""
        found = [p for p in self.config.providers if method in p.methods and p.name not in exclude]
        found.sort(key=lambda p: (not self.breakers[p.name].available(), p.priority, p.name))
        return found

    def timeout_s(self, provider: ProviderConfig) -> float:
        return (provider.timeout_ms or self.config.timeout_ms) / 1000
