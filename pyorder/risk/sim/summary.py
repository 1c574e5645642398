"""A table of what each scenario and honest kind looks like from outside: the observable
traces the generator means each to leave (and the hard negatives to share), per kind."""

import statistics
from collections import defaultdict

from pyorder.risk.events import AgentClass, OrderAttempt, PaymentAttempt
from pyorder.risk.sim.config import DAY_MS, HONEST_KINDS, SCENARIOS
from pyorder.risk.sim.stream import Simulation

HEADER = (
    "kind",
    "orders",
    "age_d",
    "amount",
    "headless%",
    "ip!=ship%",
    "fast%",
    "declined%",
    "no_ctx%",
)
"""Per kind: orders; median account age at the order (days) and amount (minor units); shares
of orders from a headless client, with the IP's region not the shipping region (of those with
both), within 5 s of the SKU's release (of flash-sale orders), with a declined payment, and
without a client context."""


def _share(hits: int, total: int) -> str:
    return f"{100 * hits / total:.1f}" if total else "-"


def summary(simulation: Simulation) -> list[tuple[str, ...]]:
    """One row per kind present (``HEADER``), scenarios first."""
    orders: dict[str, list[tuple[int, OrderAttempt]]] = defaultdict(list)
    number = 0
    for event in simulation.events:
        if isinstance(event, OrderAttempt):
            orders[simulation.labels.scenario[number]].append((number, event))
            number += 1
    declined: set[int] = set()
    payments = (e for e in simulation.events if isinstance(e, PaymentAttempt))
    for payment, paid in zip(payments, simulation.payment_order, strict=True):
        if not payment.authorised:
            declined.add(paid)

    rows: list[tuple[str, ...]] = []
    for kind in (*SCENARIOS, *HONEST_KINDS):
        placed = orders.get(kind, [])
        if not placed:
            continue
        located = [o for _, o in placed if o.ip_region and o.ship_region]
        released = [o for _, o in placed if o.sku_release_ms is not None]
        rows.append(
            (
                kind,
                str(len(placed)),
                f"{statistics.median((o.at_ms - o.account_created_ms) / DAY_MS for _, o in placed):.1f}",
                str(round(statistics.median(o.amount for _, o in placed))),
                _share(sum(o.agent == AgentClass.HEADLESS for _, o in placed), len(placed)),
                _share(sum(o.ip_region != o.ship_region for o in located), len(located)),
                _share(
                    sum(o.at_ms - (o.sku_release_ms or 0) < 5_000 for o in released), len(released)
                ),
                _share(sum(i in declined for i, _ in placed), len(placed)),
                _share(sum(o.ip is None and o.device is None for _, o in placed), len(placed)),
            )
        )
    return rows


def markdown(rows: list[tuple[str, ...]]) -> str:
    """The rows as a Markdown table under ``HEADER``."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)
