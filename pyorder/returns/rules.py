"""The lightning-refund rules: a pure function of what is known about a return and of the
thresholds in ``LightningConfig``. Every rule is reported, passed or not, with the value it saw
and the limit it held that to, so that a decision can be read back and explained.
"""

from dataclasses import dataclass

from pyorder.returns.config import LightningConfig
from pyorder.returns.model import RuleResult


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules look at (money in minor units)."""

    order_total: int
    refund_amount: int
    refundable: int
    """What of the order's charge can still be refunded."""
    recent_returns: int
    """The buyer's other returns opened in the history span before this one."""
    delivered_orders: int
    """The buyer's paid orders whose every parcel was delivered."""
    categories: frozenset[str]
    """The categories of the returned lines."""
    fulfilment_status: str
    """The order's fulfilment status (``delivered`` once every parcel is)."""
    parcel_status: str | None = None
    """The parcel back's status; None before the pickup scan is being decided on."""


def evaluate(config: LightningConfig, facts: Facts) -> tuple[RuleResult, ...]:
    """Every rule's result, in a fixed order; the return is lightning iff all passed."""
    rules = [
        RuleResult("lightning_enabled", config.enabled, int(config.enabled), 1),
        _at_most("order_amount", facts.order_total, config.max_order_amount),
        _at_most("refund_amount", facts.refund_amount, config.max_refund_amount),
        RuleResult(
            "charge_left",
            facts.refundable >= facts.refund_amount,
            facts.refundable,
            facts.refund_amount,
        ),
        _at_most("buyer_recent_returns", facts.recent_returns, config.max_recent_returns),
        _at_least("buyer_delivered_orders", facts.delivered_orders, config.min_delivered_orders),
        RuleResult(
            "category",
            not facts.categories & config.excluded_categories,
            ",".join(sorted(facts.categories)),
            ",".join(sorted(config.excluded_categories)),
        ),
        RuleResult(
            "order_delivered",
            facts.fulfilment_status == "delivered" or not config.require_order_delivered,
            facts.fulfilment_status,
            "delivered" if config.require_order_delivered else "",
        ),
    ]
    if facts.parcel_status is not None:
        scanned = facts.parcel_status in ("picked_up", "in_transit", "delivered")
        rules.append(RuleResult("return_picked_up", scanned, facts.parcel_status, "picked_up"))
    return tuple(rules)


def _at_most(rule: str, observed: int, limit: int | None) -> RuleResult:
    if limit is None:
        return RuleResult(rule, True, observed, "")
    return RuleResult(rule, observed <= limit, observed, limit)


def _at_least(rule: str, observed: int, limit: int | None) -> RuleResult:
    if limit is None:
        return RuleResult(rule, True, observed, "")
    return RuleResult(rule, observed >= limit, observed, limit)
