"""`TrainHandler`: submission-time vetting and pricing, the owner's review, training in a killable child
process, the model output (card + weights + registry arguments), timeouts and scrubbed failures."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from fractions import Fraction
from typing import Any

import pytest

from catalog.errors import BUDGET_EXHAUSTED, INVALID_REQUEST, POLICY_DENIED, DomainError
from policies import Budget
from sandbox.jobs import HANDLERS, JobFailed, gate
from sandbox.jobs.train import TrainHandler

REGISTER_MODEL_KWARGS = {"owner", "algorithm", "purpose", "features", "card", "weights_path", "output_digest",
                         "source_datasets", "valid_days"}


def _refused(world, spec: dict[str, Any], **agreement: Any) -> DomainError:
    ag = world.agreement(**agreement)
    with pytest.raises(DomainError) as e:
        TrainHandler().plan(spec, ag, world.datasets)
    return e.value


def test_registered_under_its_kind():
    assert isinstance(HANDLERS["train"], TrainHandler) and HANDLERS["train"].kind == "train"


def test_plan_prices_the_exact_cost_and_names_the_columns_read(world, train_spec):
    plan = TrainHandler().plan(train_spec, world.agreement(), world.datasets)
    assert plan.cost == Budget(Fraction(2) + Fraction(1, 10), Fraction(1, 100_000))
    assert plan.datasets == ("tax_income",)
    assert plan.columns == {"tax_income": tuple(sorted([*train_spec["features"], "has_default"]))}
    t = plan.summary["training"]
    assert t["noise_multiplier"] > 0 and t["steps"] > 0 and t["epsilon_prv"] <= 2.0
    assert plan.summary["release"] == "auto" and plan.summary["spec_sha256"].startswith("sha256:")
    # the registered row count is not part of what a party sees before paying
    assert "rows" not in json.dumps(plan.summary)
    json.dumps(plan.summary, allow_nan=False)


@pytest.mark.parametrize(("change", "agreement", "code"), [
    ({"features": ["district", "tax_paid"]}, {"columns": {"tax_income": ["district", "has_default"]}}, POLICY_DENIED),
    ({"features": ["district", "person_id"]}, {}, POLICY_DENIED),
    ({"features": ["district", "id_number"]}, {}, POLICY_DENIED),
    ({"label": "age", "features": ["district"]}, {}, INVALID_REQUEST),
    ({"label": "district", "features": ["age"]}, {}, INVALID_REQUEST),
    ({"epochs": 0}, {}, INVALID_REQUEST),
    ({"epochs": 51}, {}, INVALID_REQUEST),
    ({"batch_size": 8}, {}, INVALID_REQUEST),
    ({"batch_size": 65536}, {}, INVALID_REQUEST),
    ({"epsilon": 0}, {}, INVALID_REQUEST),
    ({"epsilon": "lots"}, {}, INVALID_REQUEST),
    ({"delta": 0.5}, {}, INVALID_REQUEST),
    ({"max_grad_norm": -1.0}, {}, INVALID_REQUEST),
    ({"rows_hint": 5000}, {}, INVALID_REQUEST),
    ({"purpose": "marketing"}, {}, POLICY_DENIED),
    ({"dataset": "enterprise_registry"}, {}, POLICY_DENIED),
])
def test_bad_specs_are_refused_at_submission(world, train_spec, change, agreement, code):
    spec = {**train_spec, **change}
    e = _refused(world, spec, **agreement)
    assert e.code == code and e.details
    if isinstance(change.get("epsilon"), str):
        assert "lots" not in json.dumps(e.details)  # submitted values are not echoed


def test_epsilon_above_the_remaining_budget_is_refused_when_charged(world, train_spec):
    ag = world.agreement(budget={"epsilon": 1, "delta": "1e-4"})
    with pytest.raises(DomainError) as e:
        world.start(TrainHandler(), ag, train_spec)
    assert e.value.code == BUDGET_EXHAUSTED
    assert world.spent(ag).spent.epsilon == 0


def test_review_shows_the_encoding_noise_and_mock_rows(world, train_spec):
    h, ag = TrainHandler(), world.agreement()
    plan = h.plan(train_spec, ag, world.datasets)
    r = h.review(train_spec, plan, world.datasets, world.env_for(ag))
    assert r["spec_sha256"] == plan.summary["spec_sha256"] and r["cost"] == {"epsilon": "2.1", "delta": "0.00001"}
    assert r["training"] == plan.summary["training"]
    assert r["input_width"] == len(r["feature_names"]) == 7 + 1 + 2 + 10 + 3
    assert [f["column"] for f in r["encoding"]["features"]] == train_spec["features"]
    mock = r["mock_rows"]
    assert len(mock["rows"]) == len(mock["encoded"]) == 3 and all(len(e) == r["input_width"] for e in mock["encoded"])
    assert "person_id" not in mock["columns"] and r["release"].startswith("auto")
    json.dumps(r, allow_nan=False)


def test_execute_trains_a_dp_model_and_describes_it_for_the_registry(world, train_spec):
    h, ag = TrainHandler(), world.agreement()
    job = world.start(h, ag, train_spec)
    out = h.execute(job, world.datasets, world.env_for(ag))
    gate.check("train", out, world.env.models_dir)
    assert out.kind == "model" and out.release == "auto"
    assert out.artifact == world.env.models_dir / job.id / "model.safetensors" and out.artifact.is_file()
    card = out.result["card"]
    assert out.result["model_id"] is None and out.result["certificate_id"] is None
    on_disk = (world.env.models_dir / job.id / "model_card.json").read_bytes()
    assert json.loads(on_disk) == card
    assert out.output_digest == "sha256:" + hashlib.sha256(out.artifact.read_bytes() + on_disk).hexdigest()
    assert card["privacy"]["epsilon"] == 2.0 and card["privacy"]["cost"] == {"epsilon": "21/10", "delta": "1/100000"}
    assert card["data"][0]["fingerprint"] == world.dataset.fingerprint
    m = out.model
    assert m is not None and set(m) == REGISTER_MODEL_KWARGS
    assert m["owner"] == "risk-lab" and m["algorithm"] == "logistic_regression" and m["purpose"] == "credit_risk"
    assert m["weights_path"] == f"{job.id}/model.safetensors" and m["output_digest"] == out.output_digest
    assert m["source_datasets"] == {"tax_income": world.dataset.fingerprint} and m["features"] == train_spec["features"]
    assert 1 <= m["valid_days"] <= 365 and m["card"] == card
    json.dumps(out.model, allow_nan=False)


def test_a_job_above_the_streaming_threshold_trains_by_passes_in_its_child(world, train_spec):
    """The worker's path with the registered-row threshold of streaming below the dataset (sandbox.train.stream)."""
    h, ag = TrainHandler(), world.agreement()
    spec = {**train_spec, "batch_size": 2048}
    job = world.start(h, ag, spec)
    out = h.execute(job, world.datasets, world.env_for(ag, extra={"train_stream_above_rows": 0}))
    gate.check("train", out, world.env.models_dir)
    card = out.result["card"]
    steps = h.plan(spec, ag, world.datasets).summary["training"]["steps"]
    assert out.kind == "model" and card["privacy"]["steps"] == steps
    assert card["metrics"]["held_out_rows"] > 0


def test_model_kwargs_match_the_registry_signature(world):
    from catalog import models

    params = inspect.signature(models.register_model).parameters
    assert REGISTER_MODEL_KWARGS <= set(params)
    assert {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and p.default is p.empty} <= \
        REGISTER_MODEL_KWARGS | {"job_id", "agreement_id"}


def test_training_past_the_job_time_limit_is_killed_and_cleaned_up(world, train_spec, monkeypatch):
    h, ag = TrainHandler(), world.agreement()
    spec = {**train_spec, "epochs": 50, "batch_size": 16}  # 12 500 noisy steps: far beyond one second
    job = world.start(h, ag, spec)
    started: list[Any] = []
    real = h._start

    def spy(target, args):
        proc = real(target, args)
        started.append(proc)
        return proc

    monkeypatch.setattr(h, "_start", spy)
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, world.env_for(ag, timeout_s=1.0))
    assert (e.value.reason, e.value.cause, e.value.before_read) == ("train.failed", "train.timeout", False)
    assert "time limit" in (e.value.detail or "")
    (proc,) = started
    assert proc.exitcode is not None and not proc.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    assert not (world.env.models_dir / job.id).exists()


def test_a_spec_the_current_agreement_no_longer_allows_fails_the_job(world, train_spec):
    h, ag = TrainHandler(), world.agreement()
    job = world.start(h, ag, train_spec)
    narrower = world.agreement(columns={"tax_income": ["district", "age", "has_default"]})
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, world.env_for(narrower))
    assert e.value.reason == "train.policy_denied" and e.value.before_read  # refunded: nothing was read
    cheaper = world.agreement()
    with pytest.raises(JobFailed) as e:
        h.execute(job.__class__(**{**job.__dict__, "cost": Budget(1)}), world.datasets, world.env_for(cheaper))
    assert e.value.reason == "train.cost_changed" and e.value.before_read


def test_a_failing_run_reports_only_a_short_reason_and_leaves_no_files(world, train_spec):
    h, ag = TrainHandler(), world.agreement()
    job = world.start(h, ag, train_spec)
    world.dataset.path.chmod(0o600)
    world.dataset.path.write_bytes(b"PAR1 this is not a parquet file SECRET-ROW-VALUE PAR1")
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, world.env_for(ag))
    assert (e.value.reason, e.value.cause, e.value.before_read) == ("train.failed", "train.error", False)
    assert e.value.detail == "training failed (INTERNAL) at stage read"
    assert not (world.env.models_dir / job.id).exists()


def test_a_training_process_that_dies_without_a_word_fails_the_job(world, train_spec, monkeypatch):
    h, ag = TrainHandler(), world.agreement()
    job = world.start(h, ag, train_spec)
    real = h._start
    monkeypatch.setattr(h, "_start", lambda target, args: real(os._exit, (3,)))  # the child dies at once
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, world.env_for(ag))
    assert (e.value.reason, e.value.cause, e.value.before_read) == ("train.failed", "train.crashed", False)
    assert not (world.env.models_dir / job.id).exists()


def test_a_training_process_that_cannot_start_is_refunded_as_never_read(world, train_spec, monkeypatch):
    h, ag = TrainHandler(), world.agreement()
    job = world.start(h, ag, train_spec)

    def no_process(target, args):
        raise OSError("no forkserver")

    monkeypatch.setattr(h, "_start", no_process)
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, world.env_for(ag))
    assert (e.value.reason, e.value.before_read) == ("worker.unavailable_before_read", True)
    assert not (world.env.models_dir / job.id).exists()
