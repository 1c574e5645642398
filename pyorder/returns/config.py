"""The returns policy: windows per category, what is not returnable, who pays the parcel back,
and the thresholds of the lightning-refund rules. Read from a JSON or TOML file
(``pyorder-server --returns-config PATH``); docs/returns.md has an example of each field.

Money thresholds are minor units (cents, fen) of the order's currency; windows and the history
span are days, fractions allowed (a window of 0.5 is 12 hours).
"""

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class LightningConfig:
    """When a return is refunded at its pickup scan with no person involved: every rule holds.
    A limit of ``None`` switches its rule off (it always passes)."""

    enabled: bool = True
    """False sends every return to the merchant's review queue."""
    max_order_amount: int | None = 200_000
    """The order's total is at most this."""
    max_refund_amount: int | None = 100_000
    """The return's refund (its lines' price) is at most this."""
    history_days: float = 30.0
    """The span of the buyer's history that ``max_recent_returns`` looks at."""
    max_recent_returns: int | None = 3
    """The buyer opened at most this many other returns in the last ``history_days``."""
    min_delivered_orders: int | None = 1
    """The buyer has at least this many paid orders delivered (this one included)."""
    require_order_delivered: bool = True
    """Every parcel of the order is delivered (not only the one returned)."""
    excluded_categories: frozenset[str] = frozenset()
    """Categories that are returnable but always reviewed (e.g. ``electronics``)."""


@dataclass(frozen=True, slots=True)
class ReturnsConfig:
    window_days: float = 7.0
    """How long after its parcel was delivered an item may be returned, by default."""
    category_window_days: Mapping[str, float] = field(default_factory=dict)
    """Per-category windows replacing ``window_days`` (e.g. ``{"apparel": 15}``)."""
    excluded_categories: frozenset[str] = frozenset()
    """Categories that cannot be returned at all (e.g. ``fresh_food``)."""
    platform_pays_first_weight: bool = True
    """The platform bears the carrier's first-weight cost of the parcel back (else the buyer)."""
    lightning: LightningConfig = field(default_factory=LightningConfig)

    def returnable(self, category: str) -> bool:
        return category not in self.excluded_categories

    def window_ms(self, category: str) -> int:
        """The return window of ``category`` in ms."""
        days = self.category_window_days.get(category, self.window_days)
        return int(days * DAY_MS)


def load_returns_config(path: Path) -> ReturnsConfig:
    """A ``ReturnsConfig`` from a ``.toml`` file, else JSON; ValueError names what is wrong."""
    raw = path.read_bytes()
    try:
        doc: object = tomllib.loads(raw.decode()) if path.suffix == ".toml" else orjson.loads(raw)
    except (
        tomllib.TOMLDecodeError,
        orjson.JSONDecodeError,
        UnicodeDecodeError,
        RecursionError,
    ) as exc:
        raise ValueError(f"{path}: not readable: {exc}") from exc
    try:
        return returns_config_from_dict(doc)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def returns_config_from_dict(doc: object) -> ReturnsConfig:
    """A ``ReturnsConfig`` from parsed JSON/TOML; absent fields keep their defaults."""
    top = _table(doc, "the returns config", ReturnsConfig)
    values: dict[str, Any] = {}
    for name, value in top.items():
        if name == "window_days":
            values[name] = _days(value, name)
        elif name == "category_window_days":
            windows = _table(value, name, None)
            values[name] = {_category(k, name): _days(v, f"{name}.{k}") for k, v in windows.items()}
        elif name == "excluded_categories":
            values[name] = _categories(value, name)
        elif name == "platform_pays_first_weight":
            values[name] = _bool(value, name)
        else:  # lightning
            values[name] = _lightning(value)
    return ReturnsConfig(**values)


def _lightning(doc: object) -> LightningConfig:
    table = _table(doc, "lightning", LightningConfig)
    values: dict[str, Any] = {}
    for name, value in table.items():
        where = f"lightning.{name}"
        if name in ("enabled", "require_order_delivered"):
            values[name] = _bool(value, where)
        elif name == "history_days":
            values[name] = _days(value, where)
        elif name == "excluded_categories":
            values[name] = _categories(value, where)
        elif value is None:
            values[name] = None
        else:
            values[name] = _count(value, where)
    return LightningConfig(**values)


def _table(doc: object, where: str, kind: type | None) -> dict[str, object]:
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a table (a JSON object)")
    if kind is not None:
        unknown = set(doc) - {f.name for f in fields(kind)}
        if unknown:
            raise ValueError(f"{where}: unknown fields: {', '.join(sorted(unknown))}")
    return doc


def _days(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number of days")
    if not math.isfinite(value) or not 0 <= value <= 3650:
        raise ValueError(f"{where} must be between 0 and 3650 days")
    return float(value)


MAX_COUNT = 10**15
"""Largest limit (an amount in minor units, a count): decisions record their limits, so a
limit must fit a 64-bit column."""


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(
            f"{where} must be a whole number from 0 to {MAX_COUNT} (or null to switch it off)"
        )
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false")
    return value


def _category(value: object, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 40 or not value.isprintable():
        raise ValueError(f"{where}: a category is a string of 1 to 40 printable characters")
    return value


def _categories(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of categories")
    return frozenset(_category(v, where) for v in value)
