"""Fixtures for encrypted scoring: a registered linear model (weights written in the training format, card with
the public encoding) on the tax bureau's data, a bank agreement (decisions only, any layout), and a CKKS key pair
per layout."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalog import models, registry
from sandbox.train import encoding_for, parse_spec
from sandbox.train.weights import save_weights
from veilbox import bank as bank_sdk

FEATURES = ["age", "industry", "district", "monthly_income", "social_insurance_months"]


def write_model(service: Any, job_id: str, *, weights: np.ndarray | None = None, bias: float = -1.25,
                card_extra: dict[str, Any] | None = None, algorithm: str = "logistic_regression",
                valid_days: int = 365, now: Any = None, features: list[str] | None = None) -> models.ModelRecord:
    """Write a weights file as DP-SGD training does and register it, as a released training job would."""
    features = features or FEATURES
    ds = registry.get(service.ctx.engine, "tax_income")
    spec = parse_spec({"dataset": "tax_income", "features": features, "label": "has_default",
                       "model": "logistic_regression", "epochs": 1, "batch_size": 64, "epsilon": 1.0,
                       "delta": 1e-6, "max_grad_norm": 1.0})
    enc = encoding_for(spec, ds)
    d = enc.width
    w = weights if weights is not None else np.linspace(-1.5, 1.5, d)
    out = service.settings.models_dir / job_id / "model.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights({"linear.weight": w.reshape(1, d), "linear.bias": np.array([bias])}, out,
                 "logistic_regression", enc.feature_names)
    card = {"model": "logistic_regression", "input_width": d, "feature_names": enc.feature_names,
            "encoding": enc.model_dump(mode="json"),
            "privacy": {"epsilon": 1.0, "delta": 1e-6, "unit": "one person"},
            "weights": {"file": "model.safetensors", "format": "safetensors",
                        "sha256": "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()},
            **(card_extra or {})}
    return models.register_model(
        service.ctx.engine, job_id=job_id, agreement_id="agr_training", owner="risk-lab", algorithm=algorithm,
        purpose="credit_risk", features=features, card=card, weights_path=f"{job_id}/model.safetensors",
        output_digest="sha256:" + "0" * 64, source_datasets={"tax_income": ds.fingerprint}, valid_days=valid_days,
        now=now)


def plain_logits(m: models.ModelRecord, models_dir: Path, x: np.ndarray) -> np.ndarray:
    from sandbox.train import load_linear_weights

    w, b, _ = load_linear_weights(models_dir / m.weights_path)
    return np.asarray(x, dtype=np.float64) @ w + b


@dataclass
class ScoreWorld:
    parties: Any
    model: models.ModelRecord
    agreement: dict[str, Any]

    @property
    def bank(self) -> Any:
        return self.parties.bank

    def logits(self, x: np.ndarray, model: models.ModelRecord | None = None) -> np.ndarray:
        return plain_logits(model or self.model, self.parties.service.settings.models_dir, x)

    def precision(self, keys: bank_sdk.ScoringKeys, model: models.ModelRecord | None = None) -> float:
        """The documented decision precision (`mpc.he.decision_precision`) for this model and the bank's keys."""
        from mpc.he import LinearModel, decision_precision, load_scoring_context
        from sandbox.train import load_linear_weights

        m = model or self.model
        w, b, _ = load_linear_weights(self.parties.service.settings.models_dir / m.weights_path)
        public = load_scoring_context(keys.public, keys.layout)
        return decision_precision(keys.layout, LinearModel(tuple(float(v) for v in w), float(b)), public)


@pytest.fixture
def sworld(parties) -> ScoreWorld:
    m = write_model(parties.service, "job_model_1")
    ag = parties.agreement("icbc-wuxi")
    return ScoreWorld(parties, m, ag)


@pytest.fixture
def make_model(parties) -> Any:
    """``make_model(job_id, **kw)``: write and register another model (see `write_model`)."""
    return lambda job_id, **kw: write_model(parties.service, job_id, **kw)


@pytest.fixture(scope="session")
def columns_keys() -> bank_sdk.ScoringKeys:
    return bank_sdk.scoring_keys("columns")


@pytest.fixture(scope="session")
def row_keys() -> bank_sdk.ScoringKeys:
    return bank_sdk.scoring_keys("row")
