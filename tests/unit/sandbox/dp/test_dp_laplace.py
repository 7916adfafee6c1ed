"""Noise: OpenDP's discrete Laplace, calibrated to the ε it is charged, with analytic accuracy that holds."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import pytest

from sandbox.dp import DiscreteLaplace, as_fraction, split_epsilon


@pytest.mark.parametrize(("sens", "eps"), [(1, Fraction(1)), (3, Fraction(3, 10)), (2_000_000, Fraction(1, 7)),
                                          (1, Fraction(1, 1000))])
def test_calibration_certifies_the_charged_epsilon(sens: int, eps: Fraction) -> None:
    import opendp.prelude as dp

    mech = DiscreteLaplace.calibrate(sens, eps)
    meas = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"), scale=mech.scale)
    assert Fraction(meas.map(sens)) <= eps
    assert mech.scale == pytest.approx(sens / float(eps), rel=1e-12)


def test_empirical_std_matches_the_analytic_scale() -> None:
    mech = DiscreteLaplace.calibrate(1, Fraction(1, 5))  # scale 5
    n = 40_000
    out = mech.release([1000] * n)
    errors = [v - 1000 for v in out]
    assert abs(statistics.fmean(errors)) < 0.15  # std of the mean ≈ 7.1 / 200 = 0.035
    assert statistics.pstdev(errors) == pytest.approx(mech.std, rel=0.05)
    assert mech.std == pytest.approx(math.sqrt(2) * 5, rel=0.02)  # ≈ continuous Laplace at this scale


def test_accuracy_bound_covers_95_percent() -> None:
    mech = DiscreteLaplace.calibrate(10, Fraction(1, 2))  # scale 20
    a = mech.accuracy(0.05)
    errors = [abs(v) for v in mech.release([0] * 20_000)]
    coverage = sum(e < a for e in errors) / len(errors)
    assert 0.94 <= coverage <= 0.965


def test_release_is_integer_and_saturates_safely() -> None:
    mech = DiscreteLaplace.calibrate(1, Fraction(1))
    out = mech.release([0, 2**40, -(2**40)])
    assert all(isinstance(v, int) for v in out)
    assert mech.release([]) == []


def test_invalid_calibrations_are_refused() -> None:
    with pytest.raises(ValueError):
        DiscreteLaplace.calibrate(0, Fraction(1))
    with pytest.raises(ValueError):
        DiscreteLaplace.calibrate(1, Fraction(0))


def test_budget_arithmetic_is_exact() -> None:
    assert as_fraction(0.1) == Fraction(1, 10)
    assert as_fraction("1e-6", "delta") == Fraction(1, 1_000_000)
    parts = split_epsilon(Fraction(1), 3)
    assert sum(parts) == 1 and len(set(parts)) == 1
    for bad in (-1, "abc", float("inf"), True):
        with pytest.raises(ValueError):
            as_fraction(bad)


@pytest.mark.parametrize("bad", [True, False, None, [1], "true", "NaN", "inf", "-1", "0x10", "1/0", "1e999999999",
                                 float("nan"), float("-inf")])
def test_budget_parsing_is_strict(bad: object) -> None:
    """``true`` is not 1, text is a plain decimal or a ratio, and a huge exponent is refused before ``Fraction``
    would allocate it."""
    with pytest.raises(ValueError):
        as_fraction(bad)  # type: ignore[arg-type]
    assert as_fraction("1/3") == Fraction(1, 3) and as_fraction("1e-40") == Fraction(1, 10**40)


@pytest.mark.parametrize("eps", [Fraction("5e-324"), Fraction(1, 10**400), Fraction(1, 2**53)])
def test_a_noise_scale_beyond_the_exact_range_is_refused_not_overflowed(eps: Fraction) -> None:
    from sandbox.dp.samplers import MAX_SCALE

    with pytest.raises(ValueError, match="too small"):
        DiscreteLaplace.calibrate(1, eps)
    assert DiscreteLaplace.calibrate(1, 1 / MAX_SCALE).scale == pytest.approx(float(MAX_SCALE))
