"""The generator's output: the time-ordered event stream and, apart from it, the truth about
each order (the labels) and which order each payment pays."""

from dataclasses import dataclass

from pyorder.risk.events import OrderAttempt, PaymentAttempt
from pyorder.risk.sim.attempts import Attempt
from pyorder.risk.sim.config import SimConfig

Event = OrderAttempt | PaymentAttempt


@dataclass(frozen=True, slots=True)
class Labels:
    """Per order, by its index among the stream's ``OrderAttempt``s (0, 1, ...)."""

    fraud: list[bool]
    scenario: list[str]
    """The fraud scenario (``config.SCENARIOS``) or the honest kind (``config.HONEST_KINDS``)."""
    label_at_ms: list[int | None]
    """When the fraud label arrives (UTC ms, after the order, maybe after the window); None
    for honest orders and for fraud never labelled. A learner at time ``t`` knows an order is
    fraud only when ``label_at_ms <= t``."""


@dataclass(frozen=True, slots=True)
class Simulation:
    """One generated data set."""

    config: SimConfig
    events: list[Event]
    """Orders and payments by time (ties: the order first, then its payments)."""
    labels: Labels
    payment_order: list[int]
    """For the i-th ``PaymentAttempt`` of ``events``, the index of the order it pays (the
    server knows it; the event schema has no order id)."""

    @property
    def orders(self) -> list[OrderAttempt]:
        """The orders alone, in stream order (index = order id)."""
        return [e for e in self.events if isinstance(e, OrderAttempt)]


def assemble(config: SimConfig, attempts: list[Attempt]) -> Simulation:
    """Merge the attempts' events into one time-ordered stream; number the orders in it."""
    keyed: list[tuple[int, int, int, Event]] = []
    for a, attempt in enumerate(attempts):
        keyed.append((attempt.order.at_ms, a, 0, attempt.order))
        # A payment is always later than its order, so its order is numbered first.
        keyed.extend((p.at_ms, a, k, p) for k, p in enumerate(attempt.payments, start=1))
    keyed.sort(key=lambda row: (row[0], row[1], row[2]))

    number: dict[int, int] = {}
    order_of: list[int] = []
    fraud: list[bool] = []
    scenario: list[str] = []
    label_at: list[int | None] = []
    for _, a, k, _ in keyed:
        if k == 0:
            number[a] = len(fraud)
            attempt = attempts[a]
            fraud.append(attempt.fraud)
            scenario.append(attempt.kind)
            label_at.append(attempt.label_at_ms)
        else:
            order_of.append(number[a])
    return Simulation(
        config, [row[3] for row in keyed], Labels(fraud, scenario, label_at), order_of
    )
