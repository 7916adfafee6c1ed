"""Exact budgets: parsing, validity, composition."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import Budget, BudgetError
from policies._exact import exact_str, from_db, parse_exact, to_db


@pytest.mark.parametrize(
    ("raw", "exact"),
    [
        (0.1, Fraction(1, 10)),
        (1e-6, Fraction(1, 1_000_000)),
        (5, Fraction(5)),
        ("0.1", Fraction(1, 10)),
        ("1e-6", Fraction(1, 1_000_000)),
        ("1/3", Fraction(1, 3)),
        (Decimal("0.25"), Fraction(1, 4)),
        (Fraction(2, 7), Fraction(2, 7)),
        (0.30000000000000004, Fraction(30000000000000004, 10**17)),
    ],
)
def test_parse_is_exact(raw: object, exact: Fraction) -> None:
    assert parse_exact(raw) == exact
    assert Budget.parse(raw).epsilon == exact


def test_float_read_from_decimal_text() -> None:
    assert Fraction(str(0.1)) == Fraction(1, 10)
    assert Budget.parse(0.1).epsilon == Fraction(1, 10) != Fraction(0.1)
    assert Budget.parse(0.1) + Budget.parse(0.2) == Budget.parse("0.3")


@pytest.mark.parametrize(
    "bad",
    [-0.1, -1, float("nan"), float("inf"), float("-inf"), "nan", "inf", "-1", "1e999999999", "abc", "", True,
     None, [1], Decimal("NaN"), Decimal("Infinity"), "1/0", "0x10", "1" * 100],
)
def test_parse_rejects(bad: object) -> None:
    with pytest.raises(BudgetError):
        Budget.parse(bad)
    with pytest.raises(BudgetError):
        Budget.parse(1, bad)


def test_delta_must_be_below_one() -> None:
    with pytest.raises(BudgetError):
        Budget.parse(1, 1)
    with pytest.raises(BudgetError):
        Budget.parse(1, "0.6") + Budget.parse(1, "0.5")


def test_budget_is_frozen_and_validated_on_construction() -> None:
    b = Budget.parse(1, "1e-6")
    with pytest.raises(AttributeError):
        b.epsilon = Fraction(2)  # type: ignore[misc]
    with pytest.raises(BudgetError):
        Budget(Fraction(-1))


def test_arithmetic_keeps_valid_budgets() -> None:
    total = Budget.parse(1, "1e-6")
    cost = Budget.parse("0.3", "1e-7")
    assert total - cost == Budget(Fraction(7, 10), Fraction(9, 10_000_000))
    assert cost.times(3) == Budget(Fraction(9, 10), Fraction(3, 10_000_000))
    assert cost.fits_in(total)
    assert not cost.times(4).fits_in(total)
    with pytest.raises(BudgetError):
        total - cost.times(4)
    with pytest.raises(BudgetError):
        Budget.parse(1, 0) - Budget.parse(0, "1e-9")  # delta alone would go negative
    with pytest.raises(BudgetError):
        cost.times(-1)
    assert Budget.zero().is_zero
    assert Budget.parse(1).max(Budget.parse("0.5", "0.1")) == Budget.parse(1, "0.1")


def test_text_forms() -> None:
    assert exact_str(Fraction(1, 1_000_000)) == "0.000001"
    assert exact_str(Fraction(5)) == "5"
    assert exact_str(Fraction(1, 3)) == "1/3"
    assert exact_str(Fraction(5, 2)) == "2.5"
    assert to_db(Fraction(1, 10)) == "1/10"
    assert Budget.parse("0.1", "1e-6").as_json() == {"epsilon": "0.1", "delta": "0.000001"}


@given(st.fractions(min_value=0, max_value=10**6, max_denominator=10**9))
def test_storage_and_text_round_trip(f: Fraction) -> None:
    assert from_db(to_db(f)) == f
    assert parse_exact(exact_str(f)) == f


@given(
    st.lists(st.fractions(min_value=0, max_value=10, max_denominator=1000), min_size=1, max_size=20),
)
def test_composition_is_exact_sum(costs: list[Fraction]) -> None:
    total = Budget.zero()
    for c in costs:
        total = total + Budget(c)
    assert total.epsilon == sum(costs)
