"""Exact privacy-budget arithmetic for one query: parsing requested ε/δ and splitting ε across noise vectors.

Budgets are ``fractions.Fraction`` end to end. A requested ε given as a float is read through its decimal
``repr`` (``0.1`` means exactly 1/10), so the cost the gateway charges is the number the analyst typed. Parsing
is the ledger's own (`policies.Budget`): booleans, NaN, infinities, negatives and text other than a plain
decimal (``"0.1"``, ``"1e-6"``, exponent at most three digits) or a ratio ``"n/d"`` are refused — so ``true``
never means 1 and ``"1e999999999"`` never makes ``Fraction`` allocate a number with a billion digits. The split
is basic sequential composition: the query's noise vectors each get ``ε / n`` and their sum is exactly ``ε``.
Pure ε-DP mechanisms consume no δ.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from policies import Budget, BudgetError

__all__ = ["MAX_EPSILON", "as_fraction", "split_epsilon"]

MAX_EPSILON = Fraction(100)


def as_fraction(value: Fraction | int | float | str | Decimal, what: str = "epsilon") -> Fraction:
    """``value`` as an exact, finite, non-negative Fraction (floats read through their decimal repr);
    ``ValueError`` (never echoing the input) otherwise."""
    if isinstance(value, bool) or not isinstance(value, Fraction | int | float | str | Decimal):
        raise ValueError(f"{what} must be a number")
    try:
        return Budget.parse(value, 0).epsilon
    except (BudgetError, TypeError, ValueError) as e:
        text = str(e).replace("epsilon", what, 1)
        raise ValueError(text if what in text else f"{what} must be a finite non-negative number") from None


def split_epsilon(total: Fraction, parts: int) -> list[Fraction]:
    """``parts`` equal shares of ``total`` that add up to exactly ``total``."""
    if parts < 1:
        raise ValueError("parts must be positive")
    share = total / parts
    return [share] * parts
