"""The model card released with a DP-SGD model: what it is, what it cost, what it was trained on.

Everything in a card is public to the grantee: the declaration-derived encoding, the DP parameters, the
dataset fingerprint, and the noisy held-out metrics. It carries no raw value and no exact row count (the
sample rate and step count do reveal the registered count to within about a batch; see
`sandbox.train.plan`). `canonical_json` is the byte string the output digest covers.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from catalog.columns import Scalar
from sandbox.train.encoding import FeatureEncoding
from sandbox.train.metrics import MetricsRelease
from sandbox.train.plan import Cost
from sandbox.train.spec import ModelKind

__all__ = ["DataSource", "ModelCard", "PrivacyReport", "TrainingReport", "WeightsRef", "extraction_bound"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class PrivacyReport(BaseModel):
    """The DP guarantee of the released (model, metrics) pair."""

    model_config = _FROZEN

    unit: str
    neighbouring: str
    mechanism: str
    accountant: str
    epsilon: float
    delta: float
    epsilon_prv: float
    epsilon_rdp: float
    metrics_epsilon: float
    standardisation_epsilon: float
    standardised_inputs: int
    cost: Cost
    noise_multiplier: float
    sample_rate: float
    steps: int
    steps_per_epoch: int
    max_grad_norm: float
    gradient_denominator: int
    noise_source: str
    secure_mode: bool
    row_count: str


class TrainingReport(BaseModel):
    """The optimiser settings the run used, and how its seed was used."""

    model_config = _FROZEN

    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    grad_sample_mode: str
    poisson_sampling: bool
    seed: int
    seed_use: str


class DataSource(BaseModel):
    """One dataset version trained on: name, fingerprint, privacy-unit column and the split used."""

    model_config = _FROZEN

    dataset: str
    fingerprint: str
    id_column: str
    split: str


class WeightsRef(BaseModel):
    """The released weights file: its name, format and the SHA-256 of its bytes."""

    model_config = _FROZEN

    file: str
    format: str
    sha256: str


class ModelCard(BaseModel):
    """Model card of one training run (docs/api.md, "Models and scoring (HE)": ``GET /models/{id}``)."""

    model_config = _FROZEN

    card_version: int = 1
    model: ModelKind
    hidden: int | None
    input_width: int
    feature_names: tuple[str, ...]
    encoding: FeatureEncoding
    label: str
    label_domain: tuple[Scalar, Scalar]
    positive_class: Scalar
    privacy: PrivacyReport
    training: TrainingReport
    data: tuple[DataSource, ...]
    metrics: MetricsRelease | None
    weights: WeightsRef
    model_extraction_bound: str
    limits: tuple[str, ...]
    warnings: tuple[str, ...]
    software: dict[str, str]

    def canonical_json(self) -> bytes:
        """Sorted-key, compact UTF-8 JSON: the card's part of the output digest."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()


def extraction_bound(model: ModelKind, width: int, hidden: int | None) -> str:
    """The card's warning of how many scoring queries reconstruct the model, for its kind and size."""
    if model == "logistic_regression":
        return (f"A linear model with d={width} inputs is fully determined by d+1={width + 1} scoring queries "
                "that return its logit (solve the linear system). Rate-limit scoring, flood the returned "
                "ciphertexts with noise, and treat unrestricted scoring access as releasing the weights.")
    return (f"A ReLU network with {hidden} hidden units over {width} inputs can be reconstructed (up to "
            "symmetries) with a number of scoring queries polynomial in its size (Carlini, Jagielski & Mironov "
            "2020; on the order of hidden×inputs). Treat unrestricted scoring access as releasing the weights.")
