"""σ calibration and accounting: the accountant's ε never exceeds the request; pinned truths."""

from __future__ import annotations

from fractions import Fraction

import pytest

from sandbox.train import epsilon_for, parse_spec, plan_training
from sandbox.train.plan import HOLDOUT_DENOMINATOR

# (σ, q, steps) → ε at δ = 1e-6, computed with Microsoft's prv_accountant (Gopi et al. 2021), independently
# of Opacus; the PRV accountant returns an upper bound within its eps_error (0.01).
MSR_PRV = {
    (0.8, 0.001, 1000): 0.477771266184522591657923840103,
    (1.5, 0.05, 1000): 6.20996924657726712126759593957,
    (3.0, 0.05, 100): 0.767933789666825572517439013609,
    (2.0, 0.001, 20000): 0.305837939762453436820521801565,
}


@pytest.mark.parametrize(("params", "expected"), list(MSR_PRV.items()))
def test_prv_epsilon_matches_pinned_values(params, expected):
    sigma, q, steps = params
    eps = epsilon_for(sigma, q, steps, 1e-6, "prv")
    assert eps == pytest.approx(expected, abs=0.01)
    assert eps >= expected - 1e-3  # an upper bound, not an estimate below the truth


def test_rdp_epsilon_matches_pinned_value_and_is_looser_than_prv():
    # Opacus' own pinned RDP value (accountants_test.py): σ=1.5, q=0.04, 2250 steps, δ=1e-5.
    rdp = epsilon_for(1.5, 0.04, 2250, 1e-5, "rdp")
    assert rdp == pytest.approx(7.32911117143, abs=1e-6)
    assert epsilon_for(1.5, 0.04, 2250, 1e-5, "prv") < rdp


@pytest.mark.parametrize("epsilon", [0.5, 3.0, 8.0])
def test_calibrated_sigma_spends_at_most_the_requested_epsilon(base_spec, epsilon):
    spec = parse_spec({**base_spec, "epsilon": epsilon})
    plan = plan_training(spec, 10_000)
    n_train = 10_000 * (HOLDOUT_DENOMINATOR - 1) // HOLDOUT_DENOMINATOR
    assert plan.planned_train_rows == n_train
    assert plan.sample_rate == spec.batch_size / n_train
    assert plan.steps == spec.epochs * round(n_train / spec.batch_size)
    # The accountant's ε for the calibrated σ is at most the request, and close to it (tight calibration).
    recomputed = epsilon_for(plan.noise_multiplier, plan.sample_rate, plan.steps, spec.delta, "prv")
    assert recomputed == plan.epsilon_prv
    # A tenth of ε pays for the feature standardisation, the rest for the noisy steps; together at most ε,
    # checked exactly.
    assert plan.standardisation_epsilon == pytest.approx(epsilon / 10)
    assert plan.sgd_epsilon == pytest.approx(epsilon * 9 / 10)
    assert plan.sgd_epsilon - 0.02 <= plan.epsilon_prv <= plan.sgd_epsilon
    assert Fraction(repr(plan.standardisation_epsilon)) + Fraction(repr(plan.epsilon_prv)) <= Fraction(repr(epsilon))
    assert plan.epsilon_rdp > plan.epsilon_prv
    # Slightly less noise would overspend: σ is (close to) the smallest that fits.
    assert (epsilon_for(plan.noise_multiplier * 0.97, plan.sample_rate, plan.steps, spec.delta, "prv")
            > plan.sgd_epsilon - 0.01)


def test_cost_is_exact_and_includes_metrics(base_spec):
    plan = plan_training(parse_spec({**base_spec, "epsilon": 0.3}), 10_000)
    assert plan.cost.epsilon == Fraction(3, 10) + Fraction(1, 10)
    assert plan.cost.delta == Fraction(1, 100_000)
    silent = plan_training(parse_spec({**base_spec, "epsilon": 0.3}), 10_000, metrics_epsilon=0)
    assert silent.cost.epsilon == Fraction(3, 10)


def test_more_privacy_means_more_noise(base_spec):
    sigmas = [plan_training(parse_spec({**base_spec, "epsilon": e}), 10_000).noise_multiplier for e in (1.0, 3.0)]
    assert sigmas[0] > sigmas[1]


def test_large_delta_is_flagged(base_spec):
    plan = plan_training(parse_spec({**base_spec, "delta": 1e-3}), 10_000)
    assert plan.warnings and "delta" in plan.warnings[0]
