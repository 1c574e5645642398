"""A plain reference of the risk features (``docs/risk.md``, "Features: the catalogue"), for
checking the Rust core's ``RiskTracker`` against: every event kept in a list, every window
count a sum over that list, strings used as they are (no hashing), no memory bound.

It follows the definitions word for word; the only state beyond the event lists is what the
definitions themselves carry: the capped distinct sets (the last 64 distinct values by last
sighting) and a buyer's lifetime totals, which restart when the buyer was idle longer than a
day (no order or payment of theirs). Events are taken in time order; one earlier than the
latest taken counts as at the latest time (the core's rule).
"""

import math
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

from pyorder.risk.events import OrderAttempt, PaymentAttempt
from pyorder.risk.features import FEATURE_NAMES

# window -> (bucket width ms, buckets)
WINDOWS = {"1m": (5_000, 12), "1h": (300_000, 12), "24h": (3_600_000, 24)}
HOUR_MS, DAY_BUCKETS = 3_600_000, 24
DISTINCT_CAP = 64
IDLE_MS = 86_400_000

Key = tuple[str, object]  # (kind, key)


def counts_at(event_ms: int, t_ms: int, window: str) -> bool:
    """Whether an event at ``event_ms`` counts in ``window`` at ``t_ms``."""
    width, buckets = WINDOWS[window]
    return event_ms // width > t_ms // width - buckets


@dataclass
class Reference:
    now_ms: int | None = None
    # (counter, kind, key) -> [(time, value)]: orders, amounts, attempts, declines
    events: dict[tuple[str, Key], list[tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # (set, kind, key) -> value -> hour last seen, oldest first
    seen: dict[tuple[str, Key], OrderedDict[object, int]] = field(
        default_factory=lambda: defaultdict(OrderedDict)
    )
    buyer_last_ms: dict[int, int] = field(default_factory=dict)
    buyer_orders: dict[int, int] = field(default_factory=dict)
    buyer_amount: dict[int, int] = field(default_factory=dict)

    # --- reading -------------------------------------------------------------------------
    def _time(self, at_ms: int) -> int:
        return at_ms if self.now_ms is None else max(at_ms, self.now_ms)

    def _sum(self, counter: str, key: Key, window: str, t: int) -> float:
        return float(sum(v for e, v in self.events[(counter, key)] if counts_at(e, t, window)))

    def _distinct(self, name: str, key: Key, t: int) -> float:
        oldest_live = t // HOUR_MS - DAY_BUCKETS
        return float(sum(1 for hour in self.seen[(name, key)].values() if hour > oldest_live))

    def _lifetime(self, buyer: int, t: int) -> tuple[int, int]:
        last = self.buyer_last_ms.get(buyer)
        if last is None or t - last > IDLE_MS:
            return 0, 0
        return self.buyer_orders[buyer], self.buyer_amount[buyer]

    def _order_features(self, o: OrderAttempt, at_ms: int, amount: int) -> list[float]:
        t = self._time(at_ms)
        f = dict.fromkeys(FEATURE_NAMES, math.nan)
        buyer: Key = ("buyer", o.buyer)
        for w in WINDOWS:
            f[f"buyer_orders_{w}"] = self._sum("orders", buyer, w, t)
        f["buyer_amount_1h"] = self._sum("amount", buyer, "1h", t)
        f["buyer_amount_24h"] = self._sum("amount", buyer, "24h", t)
        f["buyer_devices_24h"] = self._distinct("devices", buyer, t)
        f["buyer_addresses_24h"] = self._distinct("addresses", buyer, t)
        f["buyer_instruments_24h"] = self._distinct("instruments", buyer, t)
        f["buyer_declines_24h"] = self._sum("declines", buyer, "24h", t)
        n, total = self._lifetime(o.buyer, t)
        f["buyer_orders_total"] = float(n)
        if n > 0 and total > 0:
            f["amount_vs_buyer_mean"] = amount / (total / n)
        for kind, value in (("device", o.device), ("ip", o.ip), ("address", o.address)):
            if value is None:
                continue
            key: Key = (kind, value)
            for w in WINDOWS:
                f[f"{kind}_orders_{w}"] = self._sum("orders", key, w, t)
            f[f"{kind}_buyers_24h"] = self._distinct("buyers", key, t)
            if kind != "address":
                f[f"{kind}_declines_1h"] = self._sum("declines", key, "1h", t)
                sku_key: Key = (f"{kind}_sku", (value, o.sku))
                f[f"{kind}_sku_orders_1h"] = self._sum("orders", sku_key, "1h", t)
        for kind, value in (("email", o.email_hash), ("phone", o.phone_hash)):
            if value is not None:
                f[f"{kind}_buyers_24h"] = self._distinct("buyers", (kind, value), t)
        f["account_age_s"] = (at_ms - o.account_created_ms) / 1000
        f["amount"] = float(amount)
        f["quantity"] = float(o.quantity)
        if o.ip_region is not None and o.ship_region is not None:
            f["ip_region_mismatch"] = float(o.ip_region != o.ship_region)
        if o.sku_release_ms is not None:
            f["seconds_since_release"] = (at_ms - o.sku_release_ms) / 1000
        f["agent_class"] = float(o.agent)
        return [f[name] for name in FEATURE_NAMES]

    def order_features(self, o: OrderAttempt) -> list[float]:
        """The order's features before it is counted."""
        return self._order_features(o, o.at_ms, o.amount)

    def payment_features(self, o: OrderAttempt, p: PaymentAttempt) -> list[float]:
        """The order's features at the payment's time, with its amount and instrument."""
        f = self._order_features(o, p.at_ms, p.amount)
        t = self._time(p.at_ms)
        key: Key = ("instrument", p.instrument)
        named = dict(zip(FEATURE_NAMES, f, strict=True))
        for w in WINDOWS:
            named[f"instrument_attempts_{w}"] = self._sum("attempts", key, w, t)
        named["instrument_buyers_24h"] = self._distinct("buyers", key, t)
        named["instrument_declines_1h"] = self._sum("declines", key, "1h", t)
        return [named[name] for name in FEATURE_NAMES]

    # --- counting ------------------------------------------------------------------------
    def _see(self, name: str, key: Key, value: object, t: int) -> None:
        values = self.seen[(name, key)]
        hour = t // HOUR_MS
        for old in [v for v, h in values.items() if h <= hour - DAY_BUCKETS]:
            del values[old]
        if value in values:
            del values[value]
        elif len(values) == DISTINCT_CAP:
            values.popitem(last=False)  # the value seen longest ago
        values[value] = hour

    def _touch_buyer(self, buyer: int, t: int) -> None:
        last = self.buyer_last_ms.get(buyer)
        if last is None or t - last > IDLE_MS:
            self.buyer_orders[buyer] = 0
            self.buyer_amount[buyer] = 0
        self.buyer_last_ms[buyer] = t

    def observe_order(self, o: OrderAttempt) -> None:
        t = self._time(o.at_ms)
        self.now_ms = t
        buyer: Key = ("buyer", o.buyer)
        self._touch_buyer(o.buyer, t)
        self.buyer_orders[o.buyer] += 1
        self.buyer_amount[o.buyer] += o.amount
        self.events[("orders", buyer)].append((t, 1))
        self.events[("amount", buyer)].append((t, o.amount))
        if o.device is not None:
            self._see("devices", buyer, o.device, t)
        if o.address is not None:
            self._see("addresses", buyer, o.address, t)
        for kind, value in (("device", o.device), ("ip", o.ip), ("address", o.address)):
            if value is not None:
                self.events[("orders", (kind, value))].append((t, 1))
                self._see("buyers", (kind, value), o.buyer, t)
        for kind, value in (("device", o.device), ("ip", o.ip)):
            if value is not None:
                self.events[("orders", (f"{kind}_sku", (value, o.sku)))].append((t, 1))
        for kind, value in (("email", o.email_hash), ("phone", o.phone_hash)):
            if value is not None:
                self._see("buyers", (kind, value), o.buyer, t)

    def observe_payment(self, p: PaymentAttempt) -> None:
        t = self._time(p.at_ms)
        self.now_ms = t
        instrument: Key = ("instrument", p.instrument)
        self.events[("attempts", instrument)].append((t, 1))
        self._see("buyers", instrument, p.buyer, t)
        self._touch_buyer(p.buyer, t)
        self._see("instruments", ("buyer", p.buyer), p.instrument, t)
        if not p.authorised:
            self.events[("declines", instrument)].append((t, 1))
            self.events[("declines", ("buyer", p.buyer))].append((t, 1))
            for kind, value in (("device", p.device), ("ip", p.ip)):
                if value is not None:
                    self.events[("declines", (kind, value))].append((t, 1))


def reference_replay(
    orders: list[OrderAttempt],
    payments: list[PaymentAttempt],
    paid_orders: list[int] | None = None,
) -> tuple[list[list[float]], list[list[float]]]:
    """Each order's features, and each payment's when ``paid_orders`` names the order each
    pays: events merged by time, orders first at equal times."""
    ref = Reference()
    stream = sorted(
        [(o.at_ms, 0, i) for i, o in enumerate(orders)]
        + [(p.at_ms, 1, j) for j, p in enumerate(payments)]
    )
    order_rows: list[list[float]] = []
    payment_rows: list[list[float]] = []
    for _, kind, i in stream:
        if kind == 0:
            order_rows.append(ref.order_features(orders[i]))
            ref.observe_order(orders[i])
        else:
            if paid_orders is not None:
                payment_rows.append(ref.payment_features(orders[paid_orders[i]], payments[i]))
            ref.observe_payment(payments[i])
    return order_rows, payment_rows
