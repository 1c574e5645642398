"""What the carrier charges for a parcel: a first-weight price and a price per further kilogram.

Chinese carriers price by 首重 (the first weight, 1 kg here) plus 续重 (each started kilogram
beyond it). The platform pays the first weight of a return (the 7-day no-reason policy), so a
quote says both the first-weight cost and the total. Money is integer minor units.
"""

from dataclasses import dataclass

GRAMS_PER_KG = 1000


@dataclass(frozen=True)
class Quote:
    currency: str
    weight_g: int
    first_weight_g: int
    first_weight_cost: int
    additional_weight_cost: int

    @property
    def total_cost(self) -> int:
        return self.first_weight_cost + self.additional_weight_cost

    def public(self) -> dict[str, object]:
        return {
            "object": "quote",
            "currency": self.currency,
            "weight_g": self.weight_g,
            "first_weight_g": self.first_weight_g,
            "first_weight_cost": self.first_weight_cost,
            "additional_weight_cost": self.additional_weight_cost,
            "total_cost": self.total_cost,
        }


@dataclass(frozen=True)
class Tariff:
    currency: str = "CNY"
    first_weight_g: int = 1000
    first_weight_cost: int = 1200
    """Minor units for a parcel up to ``first_weight_g``."""
    additional_cost_per_kg: int = 500
    """Minor units for each started kilogram beyond the first weight."""

    def quote(self, weight_g: int) -> Quote:
        extra_g = max(0, weight_g - self.first_weight_g)
        extra_kg = -(-extra_g // GRAMS_PER_KG)  # started kilograms
        return Quote(
            currency=self.currency,
            weight_g=weight_g,
            first_weight_g=self.first_weight_g,
            first_weight_cost=self.first_weight_cost,
            additional_weight_cost=extra_kg * self.additional_cost_per_kg,
        )
