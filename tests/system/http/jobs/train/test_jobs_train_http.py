"""Training jobs over real HTTP: the operator submits on an ``owner_each_job`` agreement, the owner reviews
(encoding, σ, steps, cost) and approves bound to the spec hash, the worker trains, the card is released and the
model registered with a certificate id; bad specs are refused at submission; a run whose child started stays
charged and says only ``train.failed``."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest

from gateway.services import jobs as jobflow
from veilbox.client import ApiError

FEATURES = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months"]


def _spec(**kw: Any) -> dict[str, Any]:
    return {"dataset": "tax_income", "features": list(FEATURES), "label": "has_default",
            "model": "logistic_regression", "epochs": 1, "batch_size": 256, "epsilon": 1.0, "delta": 1e-6,
            "max_grad_norm": 1.0, **kw}


def _spent(parties, ag_id: str) -> Fraction:
    return Fraction(parties.operator.budget(ag_id)["exact"]["epsilon_spent"])


def _submit_and_approve(parties, spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "train", spec)
    assert job["state"] == "pending_approval" and _spent(parties, ag["id"]) == 0
    review = parties.owner.job_review(job["id"])
    assert review["plan"]["cost"] == {"epsilon": "1.1", "delta": "0.000001"}
    mock = review["mock"]
    assert mock["spec_sha256"] == review["plan"]["spec_sha256"] and mock["training"]["noise_multiplier"] > 0
    assert mock["input_width"] == len(mock["mock_rows"]["encoded"][0])
    parties.owner.approve_job(job["id"], job["spec_hash"])
    return ag, job


def test_trained_model_is_released_with_its_card_and_registered(parties):
    ag, job = _submit_and_approve(parties, _spec())
    done = parties.operator.wait_job(job["id"], timeout=300)
    assert done["state"] == "released", done
    assert _spent(parties, ag["id"]) == Fraction(11, 10)
    out = parties.operator.job_result(job["id"])
    card = out["result"]["card"]
    assert card["privacy"]["epsilon"] == 1.0 and card["data"][0]["dataset"] == "tax_income"
    model_id, cert = out["result"]["model_id"], out["result"]["certificate_id"]
    assert model_id and cert
    shown = parties.bank.model(model_id)
    assert shown["certificate"]["id"] == cert and shown["certificate"]["valid"] is True
    assert shown["card"] == card and shown["source_datasets"]["tax_income"]["fingerprint"].startswith("sha256:")
    assert "weights_path" not in json.dumps(shown) and model_id in [m["id"] for m in parties.regulator.models()]
    release = parties.regulator.audit(action="job.release", agreement_id=ag["id"])["entries"]
    assert [e["output_digest"] for e in release] == [out["output_digest"]]


@pytest.mark.parametrize(("change", "code"), [
    ({"features": ["district", "employer_id"]}, "POLICY_DENIED"),
    ({"features": ["district", "id_number"]}, "POLICY_DENIED"),
    ({"label": "age", "features": ["district"]}, "INVALID_REQUEST"),
    ({"epochs": 500}, "INVALID_REQUEST"),
    ({"batch_size": 4}, "INVALID_REQUEST"),
])
def test_bad_training_specs_are_refused_at_submission(parties, change, code):
    ag = parties.agreement(approval="owner_each_job")
    with pytest.raises(ApiError) as e:
        parties.operator.submit_job(ag["id"], "train", _spec(**change))
    assert e.value.code == code
    assert parties.owner.jobs(state="pending_approval") == []


def test_epsilon_above_the_budget_is_refused(parties):
    ag = parties.agreement(approval="auto_within_budget", budget={"epsilon": 1, "delta": "1e-5"})
    with pytest.raises(ApiError) as e:
        parties.operator.submit_job(ag["id"], "train", _spec(epsilon=2.0))
    assert e.value.code == "BUDGET_EXHAUSTED"
    assert _spent(parties, ag["id"]) == 0


def test_training_past_the_job_time_limit_fails_uniformly_and_stays_charged(parties):
    rt = jobflow.runtime(parties.service.ctx)
    rt.env = replace(rt.env, timeout_s=1.0)
    ag, job = _submit_and_approve(parties, _spec(epochs=50, batch_size=16))
    done = parties.operator.wait_job(job["id"], timeout=300)
    assert done["state"] == "failed" and done["failure_reason"] == "train.failed"  # never "timeout" to the grantee
    assert _spent(parties, ag["id"]) == Fraction(job["cost"]["epsilon"])  # the child read the data: charged
    assert parties.owner.job_review(job["id"])["owner_detail"]["failure"] == "train.timeout"
    assert "owner_detail" not in parties.operator.job_review(job["id"])
    assert not (parties.service.settings.models_dir / job["id"]).exists()
