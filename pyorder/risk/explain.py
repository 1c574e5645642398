"""Why a score: the features that pushed it up the most, for a decision's "top three reasons"
(``docs/risk.md``, "Model").

The core attributes a row's raw score (log-odds) to its features along each tree's path
(``RiskModel.contributions``, Saabas' method: cheap, exact in sum, one path per tree). A
reason is a feature, its value, and how far it moved the log-odds towards fraud.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyorder._core import RiskModel

TOP_REASONS = 3


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    value: float | None
    """The feature's value; None when missing."""
    contribution: float
    """How far it moved the log-odds (positive: towards fraud)."""

    def describe(self) -> str:
        shown = "missing" if self.value is None else f"{self.value:g}"
        return f"{self.feature} = {shown} ({self.contribution:+.2f})"


def reasons(model: RiskModel, row: Sequence[float], top: int = TOP_REASONS) -> list[Reason]:
    """The ``top`` features that pushed ``row``'s score up the most (only those that pushed it
    up: an order scored low may have fewer), largest first; ties by feature order."""
    _bias, contributions = model.contributions(row)
    names = model.feature_names
    ranked = sorted(
        (i for i, c in enumerate(contributions) if c > 0), key=lambda i: (-contributions[i], i)
    )
    return [
        Reason(names[i], None if math.isnan(row[i]) else float(row[i]), contributions[i])
        for i in ranked[:top]
    ]
