"""DP-SGD training for ``train`` jobs: the only way a model leaves Veilbox.

Guarantee: a released model (weights + card) is (ε + ε_metrics, δ)-differentially private with respect to
adding or removing one privacy unit of the training dataset (one row; datasets with several rows per unit are
refused), where ε ≥ ε_std + ε_PRV: ε_std (a tenth of ε, pure) pays for the DP feature standardisation and
ε_PRV is Opacus' PRV accountant's bound for the planned Poisson-subsampled Gaussian steps; ε_metrics pays for
the held-out AUC/accuracy release (discrete Laplace, OpenDP). Details and known limits:
docs/mechanisms/dp_sgd.md.

The flow (no HTTP, no ledger here; the gateway charges ``plan.cost`` before calling `train`):

    spec = parse_spec(job["spec"])                       # INVALID_REQUEST on any malformed field
    check_spec(spec, dataset, agreement_columns)         # POLICY_DENIED / INVALID_REQUEST, all violations
    plan = plan_training(spec, dataset.rows)             # σ, q, steps, cost: no data read
    ...charge plan.cost...
    result = train(spec, plan, dataset, out_dir)         # weights (safetensors) + ModelCard + output_digest

Modules: `spec` (TrainSpec and its checks), `encoding` (declaration-only feature encoding, shared with
scoring clients and federated training), `plan` (σ calibration and the cost, through Opacus' accountants in
`sandbox.dp.prv`), `standardise` (a noisy mean and spread per bounded input, paid from a tenth of ε, folded
back into the first layer after training), `runner` (the DP-SGD loop), `metrics` (DP held-out metrics),
`card` (the model card), `weights` (safetensors I/O), `stream` (Poisson batches for data too large to hold:
geometric skips, passes over the engine). `_data` (locked DuckDB reads, in memory or streamed) and `_models`
are internal. Metrics and standardisation noise come from `sandbox.dp.DiscreteLaplace`, the sandbox's one noise
source besides Opacus' optimizer.

Names are resolved lazily (as in `sandbox`): importing `sandbox.train.encoding` — what the bank SDK and the
federated holders need — never loads torch; only `runner` (and `_models`) import torch, on first use of
`train`, `TrainingResult` or `ProgressFn`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.dp.prv import epsilon_for
    from sandbox.train._data import ResourceLimits
    from sandbox.train.card import ModelCard
    from sandbox.train.encoding import FeatureEncoding, encode_features, encoding_for
    from sandbox.train.metrics import MetricsRelease
    from sandbox.train.plan import METRICS_EPSILON, Cost, TrainingPlan, plan_training
    from sandbox.train.runner import ProgressFn, TrainingResult, train
    from sandbox.train.spec import TrainSpec, check_spec, parse_spec
    from sandbox.train.weights import load_linear_weights

__all__ = [
    "METRICS_EPSILON",
    "Cost",
    "FeatureEncoding",
    "MetricsRelease",
    "ModelCard",
    "ProgressFn",
    "ResourceLimits",
    "TrainSpec",
    "TrainingPlan",
    "TrainingResult",
    "check_spec",
    "encode_features",
    "encoding_for",
    "epsilon_for",
    "load_linear_weights",
    "parse_spec",
    "plan_training",
    "train",
]

_LAZY = {
    "METRICS_EPSILON": "sandbox.train.plan",
    "Cost": "sandbox.train.plan",
    "FeatureEncoding": "sandbox.train.encoding",
    "MetricsRelease": "sandbox.train.metrics",
    "ModelCard": "sandbox.train.card",
    "ProgressFn": "sandbox.train.runner",
    "ResourceLimits": "sandbox.train._data",
    "TrainSpec": "sandbox.train.spec",
    "TrainingPlan": "sandbox.train.plan",
    "TrainingResult": "sandbox.train.runner",
    "check_spec": "sandbox.train.spec",
    "encode_features": "sandbox.train.encoding",
    "encoding_for": "sandbox.train.encoding",
    "epsilon_for": "sandbox.dp.prv",
    "load_linear_weights": "sandbox.train.weights",
    "parse_spec": "sandbox.train.spec",
    "plan_training": "sandbox.train.plan",
    "train": "sandbox.train.runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
