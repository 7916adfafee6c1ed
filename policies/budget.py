"""Privacy budgets as exact numbers.

`Budget` is an (ε, δ) pair of `fractions.Fraction` under *basic sequential composition*: running mechanisms
costing (ε₁, δ₁) and (ε₂, δ₂) on the same data costs (ε₁ + ε₂, δ₁ + δ₂). The type is frozen and only allows
arithmetic that keeps a valid budget (ε ≥ 0, 0 ≤ δ < 1): subtracting more than is there, or composing past
δ = 1, raises `BudgetError` instead of producing a negative or meaningless budget.

`RhoBudget` is a zero-concentrated DP cost ρ (Bun & Steinke 2016). ρ-costs compose by addition; the ledger
keeps (ε, δ), so a ρ-cost is converted with `RhoBudget.to_approx_dp(δ)` using
ε = ρ + 2·sqrt(ρ·ln(1/δ)) (Prop. 1.3), evaluated with 60 significant digits and rounded *up* to a rational
(an over-estimate of ε is safe; an under-estimate is not).

Inputs are parsed exactly: a float is read from its shortest decimal repr (0.1 is 1/10); NaN, ±inf,
negative values and booleans are refused.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from policies._exact import exact_str, parse_exact

_ONE = Fraction(1)


class BudgetError(ValueError):
    """An operation would produce an invalid budget (negative, or δ ≥ 1)."""


@dataclass(frozen=True)
class Budget:
    """An (ε, δ) privacy cost or allowance. Exact; immutable; always valid."""

    epsilon: Fraction
    delta: Fraction = Fraction(0)

    def __post_init__(self) -> None:
        try:
            eps = parse_exact(self.epsilon, "epsilon")
            delta = parse_exact(self.delta, "delta")
        except ValueError as e:
            raise BudgetError(str(e)) from None
        if delta >= _ONE:
            raise BudgetError("delta must be smaller than 1")
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "delta", delta)

    @classmethod
    def parse(cls, epsilon: object, delta: object = 0) -> Budget:
        """Exact budget from user input (int, float, Decimal, str "0.1" / "1e-6" / "1/3", Fraction)."""
        return cls(epsilon, delta)  # type: ignore[arg-type]  # __post_init__ parses exactly

    @classmethod
    def zero(cls) -> Budget:
        """The empty cost ``(0, 0)``: the identity of composition."""
        return cls(Fraction(0), Fraction(0))

    @property
    def is_zero(self) -> bool:
        """Whether both ε and δ are 0."""
        return self.epsilon == 0 and self.delta == 0

    def __add__(self, other: object) -> Budget:
        """Basic composition."""
        if not isinstance(other, Budget):
            return NotImplemented
        return Budget(self.epsilon + other.epsilon, self.delta + other.delta)

    def __sub__(self, other: object) -> Budget:
        if not isinstance(other, Budget):
            return NotImplemented
        if not other.fits_in(self):
            raise BudgetError("cannot subtract more budget than there is")
        return Budget(self.epsilon - other.epsilon, self.delta - other.delta)

    def times(self, k: int) -> Budget:
        """k-fold basic composition of this cost."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise BudgetError("k must be a non-negative integer")
        return Budget(self.epsilon * k, self.delta * k)

    def fits_in(self, allowance: Budget) -> bool:
        """True when spending ``self`` out of ``allowance`` leaves both components non-negative."""
        return self.epsilon <= allowance.epsilon and self.delta <= allowance.delta

    def max(self, other: Budget) -> Budget:
        """Component-wise maximum."""
        return Budget(max(self.epsilon, other.epsilon), max(self.delta, other.delta))

    def as_json(self) -> dict[str, str]:
        """Exact canonical text of each component (``"0.1"``, ``"1/3"``)."""
        return {"epsilon": exact_str(self.epsilon), "delta": exact_str(self.delta)}

    def as_floats(self) -> dict[str, float]:
        """For display only: the nearest floats."""
        return {"epsilon": float(self.epsilon), "delta": float(self.delta)}

    def __str__(self) -> str:
        return f"(ε={exact_str(self.epsilon)}, δ={exact_str(self.delta)})"


_RHO_DIGITS = 60
_RHO_GRID = 10**12


@dataclass(frozen=True)
class RhoBudget:
    """A zCDP cost ρ ≥ 0. Composes by addition; converts to an (ε, δ) `Budget` for the ledger."""

    rho: Fraction

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "rho", parse_exact(self.rho, "rho"))
        except ValueError as e:
            raise BudgetError(str(e)) from None

    def __add__(self, other: object) -> RhoBudget:
        if not isinstance(other, RhoBudget):
            return NotImplemented
        return RhoBudget(self.rho + other.rho)

    def to_approx_dp(self, delta: object) -> Budget:
        """(ε, δ) with ε = ρ + 2·sqrt(ρ·ln(1/δ)) rounded up to a multiple of 1e-12, for 0 < δ < 1."""
        d = parse_exact(delta, "delta")
        if not 0 < d < 1:
            raise BudgetError("delta must be in (0, 1) to convert a zCDP cost")
        if self.rho == 0:
            return Budget(Fraction(0), d)
        ctx = decimal.Context(prec=_RHO_DIGITS, rounding=decimal.ROUND_CEILING)
        rho = ctx.divide(decimal.Decimal(self.rho.numerator), decimal.Decimal(self.rho.denominator))
        inv_delta = ctx.divide(decimal.Decimal(d.denominator), decimal.Decimal(d.numerator))
        eps = ctx.add(rho, ctx.multiply(decimal.Decimal(2), ctx.multiply(rho, inv_delta.ln(ctx)).sqrt(ctx)))
        # ln/sqrt are correctly rounded to 60 digits; one grid step more than the ceiling covers their last ulp.
        grid = int((eps * _RHO_GRID).to_integral_value(rounding=decimal.ROUND_CEILING)) + 1
        return Budget(Fraction(grid, _RHO_GRID), d)


def budget_from_json(data: Any) -> Budget:
    """A `Budget` from ``{"epsilon": ..., "delta": ...}`` (delta optional)."""
    if not isinstance(data, dict) or "epsilon" not in data or not set(data) <= {"epsilon", "delta"}:
        raise BudgetError("a budget is an object with 'epsilon' and optional 'delta'")
    return Budget.parse(data["epsilon"], data.get("delta", 0))
