"""End-to-end DP-SGD on the synthetic city: it learns, spends what it says, and releases only safe files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from catalog.errors import INTERNAL, INVALID_REQUEST, DomainError
from sandbox.train import ModelCard, TrainingResult, load_linear_weights, parse_spec, plan_training, train
from sandbox.train import runner as runner_mod
from sandbox.train._data import Split, read_splits
from sandbox.train._models import build_model

CARD_FIELDS = {
    "card_version", "model", "hidden", "input_width", "feature_names", "encoding", "label", "label_domain",
    "positive_class", "privacy", "training", "data", "metrics", "weights", "model_extraction_bound", "limits",
    "warnings", "software",
}
PRIVACY_FIELDS = {
    "unit", "neighbouring", "mechanism", "accountant", "epsilon", "delta", "epsilon_prv", "epsilon_rdp",
    "metrics_epsilon", "standardisation_epsilon", "standardised_inputs", "cost", "noise_multiplier",
    "sample_rate", "steps", "steps_per_epoch", "max_grad_norm",
    "gradient_denominator", "noise_source", "secure_mode", "row_count",
}
METRICS_FIELDS = {"epsilon", "split", "threshold", "confusion", "held_out_rows", "accuracy", "auc",
                  "score_histogram", "noise"}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels > 0.5
    p, n = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - p * (p + 1) / 2) / (p * n))


def held_out(result: TrainingResult, dataset) -> Split:
    return read_splits(dataset, result.card.encoding)[1]


def run(tmp: Path, dataset, raw: dict, progress=None) -> TrainingResult:
    spec = parse_spec(raw)
    return train(spec, plan_training(spec, dataset.rows), dataset, tmp, progress=progress)


@pytest.fixture(scope="module")
def logreg(tax_income, tmp_path_factory) -> TrainingResult:
    raw = {"dataset": "tax_income", "label": "has_default", "model": "logistic_regression", "epochs": 4,
           "batch_size": 256, "epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0,
           "features": ["district", "age", "gender", "industry", "monthly_income", "tax_paid",
                        "social_insurance_months"]}
    seen: list[tuple[int, int]] = []
    result = run(tmp_path_factory.mktemp("logreg"), tax_income, raw, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == result.card.privacy.steps
    return result


@pytest.fixture(scope="module")
def mlp(tax_income, tmp_path_factory) -> TrainingResult:
    raw = {"dataset": "tax_income", "label": "has_default", "model": "mlp", "hidden": 16, "epochs": 4,
           "batch_size": 256, "epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0, "learning_rate": 1.0,
           "features": ["district", "age", "industry", "monthly_income", "social_insurance_months"]}
    return run(tmp_path_factory.mktemp("mlp"), tax_income, raw)


def test_logistic_regression_learns_at_epsilon_3(logreg, tax_income):
    w, b, names = load_linear_weights(logreg.weights_path)
    assert names == list(logreg.card.feature_names) and w.shape == (logreg.card.input_width,)
    ho = held_out(logreg, tax_income)
    true_auc = auc(ho.x @ w + b, ho.y)
    assert true_auc > 0.7
    # The released (noisy, ε=0.1) metrics are in the neighbourhood of the truth.
    m = logreg.card.metrics
    assert m is not None and m.auc is not None and m.accuracy is not None
    assert abs(m.auc - true_auc) < 0.2
    assert abs(m.accuracy - float(((ho.x @ w + b > 0) == (ho.y > 0.5)).mean())) < 0.1


def test_mlp_learns_at_epsilon_3(mlp, tax_income):
    t = load_file(str(mlp.weights_path))
    assert set(t) == {"hidden.weight", "hidden.bias", "output.weight", "output.bias"}
    assert t["hidden.weight"].shape == (16, mlp.card.input_width)
    ho = held_out(mlp, tax_income)
    h = np.maximum(ho.x @ t["hidden.weight"].T + t["hidden.bias"], 0)
    logits = (h @ t["output.weight"].T + t["output.bias"]).ravel()
    assert auc(logits, ho.y) > 0.7
    with pytest.raises(DomainError) as e:
        load_linear_weights(mlp.weights_path)  # not a linear model
    assert e.value.code == INVALID_REQUEST


def test_card_has_every_field(logreg, mlp):
    for result in (logreg, mlp):
        card = result.card.model_dump(mode="json")
        assert set(card) == CARD_FIELDS
        assert set(card["privacy"]) == PRIVACY_FIELDS
        assert set(card["metrics"]) == METRICS_FIELDS
        assert card["data"][0]["fingerprint"].startswith("sha256:")
        assert card["encoding"]["features"][0] == {"kind": "one_hot", "column": "district",
                                                   "domain": ["Liangxi", "Xinwu", "Binhu", "Huishan", "Xishan",
                                                              "Jiangyin", "Yixing"]}
        assert "d+1" in card["model_extraction_bound"] or result.card.model == "mlp"
        assert card["training"]["grad_sample_mode"] == "ghost" and card["training"]["poisson_sampling"]
    assert mlp.card.hidden == 16 and logreg.card.hidden is None


def test_accountant_spent_at_most_the_request(logreg):
    p = logreg.card.privacy
    assert p.accountant == "prv"
    assert p.epsilon_prv <= p.epsilon == 3.0
    assert p.epsilon_rdp > p.epsilon_prv
    assert p.cost.epsilon == pytest.approx(3.1) and p.metrics_epsilon == 0.1
    assert p.steps == 4 * round(8000 / 256) and p.sample_rate == 256 / 8000
    assert p.noise_multiplier > 0.5 and not p.secure_mode


def test_outputs_are_safetensors_and_card_only(logreg, mlp, train_home):
    for result in (logreg, mlp):
        files = sorted(f.name for f in result.weights_path.parent.iterdir())
        assert files == ["model.safetensors", "model_card.json"]
        header_len = int.from_bytes(result.weights_path.read_bytes()[:8], "little")
        header = json.loads(result.weights_path.read_bytes()[8:8 + header_len])
        assert header["__metadata__"]["format"] == "veilbox.dp_model"
    roots = [logreg.weights_path.parent, mlp.weights_path.parent, train_home]
    for root in roots:
        for f in root.rglob("*"):
            assert f.suffix not in (".pt", ".pth", ".pkl", ".pickle", ".bin")
            if f.is_file() and f.suffix != ".db":
                assert not f.read_bytes()[:2] == b"\x80\x04", f"pickle stream in {f}"


def test_digest_covers_weights_and_card(logreg):
    weights = logreg.weights_path.read_bytes()
    card_bytes = (logreg.weights_path.parent / "model_card.json").read_bytes()
    assert card_bytes == logreg.card.canonical_json()
    assert logreg.output_digest == "sha256:" + hashlib.sha256(weights + card_bytes).hexdigest()
    assert logreg.card.weights.sha256 == "sha256:" + hashlib.sha256(weights).hexdigest()
    again = ModelCard.model_validate_json(card_bytes)
    assert again == logreg.card


def test_weights_round_trip(logreg):
    stored = load_file(str(logreg.weights_path))
    w, b, _ = load_linear_weights(logreg.weights_path)
    np.testing.assert_array_equal(stored["linear.weight"].ravel().astype(np.float64), w)
    assert float(stored["linear.bias"][0]) == b
    assert np.isfinite(w).all()


def test_seed_fixes_initialisation_but_not_the_noise(tax_income, tmp_path):
    torch.testing.assert_close(build_model("mlp", 5, 4, 7).state_dict(), build_model("mlp", 5, 4, 7).state_dict())
    raw = {"dataset": "tax_income", "label": "has_default", "model": "logistic_regression", "epochs": 1,
           "batch_size": 2048, "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0, "seed": 42,
           "features": ["age", "monthly_income"]}
    a = run(tmp_path / "a", tax_income, raw)
    b = run(tmp_path / "b", tax_income, raw)
    assert not np.array_equal(load_linear_weights(a.weights_path)[0], load_linear_weights(b.weights_path)[0])
    assert a.output_digest != b.output_digest


def test_plan_must_match_the_spec(tax_income, tmp_path, base_spec):
    spec = parse_spec(base_spec)
    other = plan_training(parse_spec({**base_spec, "epochs": 1}), tax_income.rows)
    with pytest.raises(DomainError) as e:
        train(spec, other, tax_income, tmp_path)
    assert e.value.code == INVALID_REQUEST


def test_training_failures_are_scrubbed(tax_income, tmp_path, base_spec, monkeypatch):
    def explode(*_a, **_k):
        raise ValueError(f"bad value {torch.tensor([31337.0])} in row person_id=P0000042")

    monkeypatch.setattr(runner_mod, "_fit", explode)
    spec = parse_spec({**base_spec, "epochs": 1})
    with pytest.raises(DomainError) as e:
        train(spec, plan_training(spec, tax_income.rows), tax_income, tmp_path / "out")
    err = e.value
    assert err.code == INTERNAL and err.message == "training failed" and err.details == [{"stage": "train"}]
    text = f"{err} {err!r} {err.details}"
    assert "31337" not in text and "P0000042" not in text
    assert err.__cause__ is None and err.__suppress_context__
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_empty_poisson_batches_still_take_noisy_steps(base_spec):
    spec = parse_spec({**base_spec, "epochs": 1, "batch_size": 64})
    plan = plan_training(spec, 1000)
    empty = Split(np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
    fitted = runner_mod._fit(spec, plan, empty, 3, None)
    assert fitted.steps == plan.steps
    weight = fitted.model.state_dict()["linear.weight"]
    assert torch.isfinite(weight).all() and weight.abs().sum() > 0  # pure noise moved the zero init
