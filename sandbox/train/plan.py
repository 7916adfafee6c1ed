"""The training plan: σ, sample rate, steps and the (ε, δ) cost, computed before any data is read.

`plan_training(spec, dataset_rows)` is what the gateway charges from. It fixes, from the spec and a row
count only:

- the planned number of training rows ``N = floor(rows · 4/5)`` (the 80 % side of the id-hash split),
- the Poisson sample rate ``q = batch_size / N`` and ``steps_per_epoch = round(N / batch_size)``,
- the number of noisy steps ``T = epochs · steps_per_epoch``,
- the split of the requested ε: ``ε_std = ε · STANDARDISATION_SHARE`` (a tenth) pays for a noisy estimate of
  the mean and spread of each bounded numeric feature (`sandbox.train.standardise`, pure ε, discrete
  Laplace), and the rest ``ε_sgd = ε − ε_std`` for the noisy gradient steps,
- the noise multiplier σ: the smallest σ (to 0.01 in ε) for which Opacus' PRV accountant (Gopi et al. 2021)
  bounds the T-fold composition of the Poisson-subsampled Gaussian mechanism by (ε_sgd, δ) (`sandbox.dp.prv`);
  ``ε_std + ε_PRV ≤ ε`` is checked in exact arithmetic,
- the cost charged: ``(ε + ε_metrics, δ)`` where ε_metrics pays for the held-out AUC/accuracy release
  (pure ε, discrete Laplace; see `sandbox.train.metrics`).

Training then uses exactly this q, T, σ and the constant ``batch_size`` as the gradient-average
denominator, so nothing of the private data's size enters the mechanism except through ``dataset_rows``.

About the row count: ``dataset_rows`` is the registered row count. It is known to the sandbox but not to
the analyst. The guarantee is stated under add/remove-one-unit neighbours *given* that count: q, T and the
denominator are functions of it, and the card (sample rate, steps) reveals it to within about a batch. A
deployment that must hide the row count passes a DP count instead (and charges its ε as well); the plan is
then a post-processing of that count. The ε reported by the RDP accountant for the same (σ, q, T) is shown
next to the PRV value for comparison; the PRV value is the one calibrated and charged.
"""

from __future__ import annotations

import math
from fractions import Fraction

from pydantic import BaseModel, ConfigDict

from catalog.errors import INTERNAL, INVALID_REQUEST, DomainError
from catalog.fingerprint import HashAlg
from sandbox.dp.prv import epsilon_for, noise_multiplier_for
from sandbox.train.spec import ModelKind, TrainSpec

__all__ = [
    "HOLDOUT_DENOMINATOR",
    "MAX_STEPS",
    "METRICS_EPSILON",
    "STANDARDISATION_SHARE",
    "Cost",
    "TrainingPlan",
    "plan_training",
]

#: One row in HOLDOUT_DENOMINATOR (by id hash) is held out for metrics: an 80/20 split.
HOLDOUT_DENOMINATOR = 5
#: ε spent on the held-out metrics release (noisy confusion counts + per-class score histograms).
METRICS_EPSILON = 0.1
#: More noisy steps than this are refused (the PRV calibration grows with T; use a larger batch).
MAX_STEPS = 100_000
#: Share of the requested training ε spent on the feature standardisation (the rest goes to the gradient steps).
#: A fixed constant, never a function of the data: planned before any row is read.
STANDARDISATION_SHARE = Fraction(1, 10)
#: Target precision of the σ search, in ε (the accountant's ε is ≤ the requested ε, within this).
EPSILON_TOLERANCE = 0.01


class Cost(BaseModel):
    """An exact (ε, δ) cost, ready for the ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: Fraction
    delta: Fraction


class TrainingPlan(BaseModel):
    """Everything the mechanism will do, fixed before the data is touched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec_sha256: str
    model: ModelKind
    dataset_rows: int
    planned_train_rows: int
    batch_size: int
    sample_rate: float
    steps_per_epoch: int
    epochs: int
    steps: int
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    epsilon_requested: float
    standardisation_epsilon: float
    sgd_epsilon: float
    epsilon_prv: float
    epsilon_rdp: float
    metrics_epsilon: float
    cost: Cost
    warnings: tuple[str, ...] = ()


def _exact(x: float) -> Fraction:
    return Fraction(repr(x))


def plan_training(spec: TrainSpec, dataset_rows: int, *, metrics_epsilon: float = METRICS_EPSILON,
                  hash_alg: HashAlg = "sha256") -> TrainingPlan:
    """Calibrate σ for ``spec`` on a dataset of ``dataset_rows`` rows and state the cost; reads no data. The plan
    names its spec by the home suite's hash ``hash_alg`` (`TrainSpec.sha256`)."""
    if isinstance(dataset_rows, bool) or not isinstance(dataset_rows, int) or dataset_rows < 1:
        raise DomainError(INVALID_REQUEST, "the dataset has no rows to train on")
    if not (math.isfinite(metrics_epsilon) and 0 <= metrics_epsilon <= 1):
        raise DomainError(INVALID_REQUEST, "the metrics epsilon must be within [0, 1]")
    n_train = dataset_rows * (HOLDOUT_DENOMINATOR - 1) // HOLDOUT_DENOMINATOR
    if spec.batch_size > n_train:
        raise DomainError(INVALID_REQUEST, "batch_size is larger than this dataset allows; use a smaller one",
                          [{"field": "batch_size", "problem": "exceeds the number of training rows"}])
    sample_rate = spec.batch_size / n_train
    steps_per_epoch = max(1, round(n_train / spec.batch_size))
    steps = spec.epochs * steps_per_epoch
    if steps > MAX_STEPS:
        raise DomainError(INVALID_REQUEST, f"the plan needs more than {MAX_STEPS} noisy steps; "
                          "use a larger batch_size or fewer epochs",
                          [{"field": "batch_size", "problem": "too small for this dataset and epoch count"}])
    eps_std = float(_exact(spec.epsilon) * STANDARDISATION_SHARE)
    eps_sgd = float(_exact(spec.epsilon) - _exact(eps_std))
    try:
        sigma = noise_multiplier_for(eps_sgd, spec.delta, sample_rate, steps, EPSILON_TOLERANCE)
    except ValueError:
        raise DomainError(INVALID_REQUEST, "epsilon is too small to train with these settings",
                          [{"field": "epsilon", "problem": "no noise level reaches it"}]) from None
    eps_prv = epsilon_for(sigma, sample_rate, steps, spec.delta, "prv")
    if not (eps_prv <= eps_sgd and _exact(eps_std) + _exact(eps_prv) <= _exact(spec.epsilon)):
        raise DomainError(INTERNAL, "the privacy calibration failed")
    eps_rdp = epsilon_for(sigma, sample_rate, steps, spec.delta, "rdp")
    notes: list[str] = []
    if spec.delta >= 1 / dataset_rows:
        notes.append("delta is not below 1/rows: a (ε, δ) guarantee with such δ allows releasing a few rows")
    return TrainingPlan(
        spec_sha256=spec.sha256(hash_alg),
        model=spec.model,
        dataset_rows=dataset_rows,
        planned_train_rows=n_train,
        batch_size=spec.batch_size,
        sample_rate=sample_rate,
        steps_per_epoch=steps_per_epoch,
        epochs=spec.epochs,
        steps=steps,
        noise_multiplier=sigma,
        max_grad_norm=spec.max_grad_norm,
        delta=spec.delta,
        epsilon_requested=spec.epsilon,
        standardisation_epsilon=eps_std,
        sgd_epsilon=eps_sgd,
        epsilon_prv=eps_prv,
        epsilon_rdp=eps_rdp,
        metrics_epsilon=metrics_epsilon,
        cost=Cost(epsilon=_exact(spec.epsilon) + _exact(metrics_epsilon), delta=_exact(spec.delta)),
        warnings=tuple(notes),
    )
