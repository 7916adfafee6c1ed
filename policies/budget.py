"""Privacy budgets as exact numbers.

`Budget` is an (ε, δ) pair of `fractions.Fraction` under *basic sequential composition*: running mechanisms
costing (ε₁, δ₁) and (ε₂, δ₂) on the same data costs (ε₁ + ε₂, δ₁ + δ₂). The type is frozen and only allows
arithmetic that keeps a valid budget (ε ≥ 0, 0 ≤ δ < 1): subtracting more than is there, or composing past
δ = 1, raises `BudgetError` instead of producing a negative or meaningless budget.

Mechanisms accounted in other terms (zCDP, PRV) are converted to (ε, δ) by the sandbox (`sandbox.dp`) before
they reach a `Budget`.

Inputs are parsed exactly: a float is read from its shortest decimal repr (0.1 is 1/10); NaN, ±inf,
negative values and booleans are refused.
"""

from __future__ import annotations

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


def budget_from_json(data: Any) -> Budget:
    """A `Budget` from ``{"epsilon": ..., "delta": ...}`` (delta optional)."""
    if not isinstance(data, dict) or "epsilon" not in data or not set(data) <= {"epsilon", "delta"}:
        raise BudgetError("a budget is an object with 'epsilon' and optional 'delta'")
    return Budget.parse(data["epsilon"], data.get("delta", 0))
