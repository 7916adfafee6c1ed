"""Exact privacy-budget arithmetic for one query: parsing requested ε/δ and splitting ε across noise vectors.

Budgets are ``fractions.Fraction`` end to end. A requested ε given as a float is read through its decimal
``repr`` (``0.1`` means exactly 1/10), so the cost the gateway charges is the number the analyst typed. The
split is basic sequential composition: the query's noise vectors each get ``ε / n`` and their sum is exactly
``ε``. Pure ε-DP mechanisms consume no δ.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

__all__ = ["as_fraction", "split_epsilon"]

MAX_EPSILON = Fraction(100)


def as_fraction(value: Fraction | int | float | str | Decimal, what: str = "epsilon") -> Fraction:
    """``value`` as an exact, finite, non-negative Fraction (floats read through their decimal repr)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number")
    try:
        if isinstance(value, Fraction):
            out = value
        elif isinstance(value, float):
            out = Fraction(repr(value))
        else:
            out = Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ValueError(f"{what} must be a finite number") from None
    if out < 0:
        raise ValueError(f"{what} must not be negative")
    return out


def split_epsilon(total: Fraction, parts: int) -> list[Fraction]:
    """``parts`` equal shares of ``total`` that add up to exactly ``total``."""
    if parts < 1:
        raise ValueError("parts must be positive")
    share = total / parts
    return [share] * parts
