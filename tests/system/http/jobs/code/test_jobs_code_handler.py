"""`CodeHandler`: spec vetting, the owner's review (code hash + dry run on the mock), the run on a
column-projected copy in the bubblewrap sandbox, owner release, scrubbed failures, refusal without a sandbox."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest

from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError
from policies import Budget
from sandbox.coderun import SandboxConfig, code_hash, tmpfs
from sandbox.jobs import HANDLERS, JobFailed, digest_json, gate
from sandbox.jobs.code import CodeHandler

FORBIDDEN = ("person_id", "id_number", "employer_id")

SUMMARY = '''
import pyarrow.compute as pc

def main(inputs):
    t = inputs["tax_income"]
    print("rows seen:", t.num_rows)
    return {"columns": sorted(t.column_names), "mean_income": round(pc.mean(t["monthly_income"]).as_py(), -2)}
'''

PROBE = '''
import os
import pyarrow.parquet as pq

def main(inputs):
    return {"table": sorted(inputs["tax_income"].column_names),
            "file": sorted(pq.read_schema("/inputs/tax_income.parquet").names),
            "listing": sorted(os.listdir("/inputs"))}
'''

MODEL = '''
import numpy as np
from safetensors.numpy import save

def main(inputs):
    t = inputs["tax_income"]
    return save({"w": np.full((3,), float(t.num_rows > 0), dtype=np.float32), "b": np.zeros((1,), np.float32)})
'''


def _spec(source: str = SUMMARY, **kw: Any) -> dict[str, Any]:
    return {"dataset": "tax_income", "source": source, "entrypoint": "main",
            "outputs": {"kind": "json", "max_bytes": 65536}, **kw}


def _env(world, ag, limits, **extra: Any):
    return world.env_for(ag, extra={"code_limits": limits, **extra})


def test_registered_under_its_kind():
    assert isinstance(HANDLERS["code"], CodeHandler) and HANDLERS["code"].kind == "code"


def test_plan_costs_what_the_spec_declares_and_binds_the_code_hash(world):
    ag = world.agreement()
    plan = CodeHandler().plan(_spec(), ag, world.datasets)
    assert plan.cost == Budget.zero()
    assert plan.columns == {"tax_income": tuple(sorted(ag.document.columns["tax_income"]))}
    assert plan.summary["code_hash"] == code_hash(SUMMARY, "main", {"kind": "json", "max_bytes": 65536})
    assert plan.summary["differentially_private"] is False and plan.summary["release"] == "owner"
    assert CodeHandler().plan(_spec(epsilon="0.5"), ag, world.datasets).cost == Budget(Fraction(1, 2))
    other = CodeHandler().plan(_spec(SUMMARY + "\n# changed\n"), ag, world.datasets)
    assert other.summary["code_hash"] != plan.summary["code_hash"]


@pytest.mark.parametrize(("spec", "code"), [
    (_spec(extra=1), INVALID_REQUEST),
    ({"dataset": "tax_income", "outputs": {"kind": "json"}}, INVALID_REQUEST),
    (_spec("def main(inputs):\n    return (\n"), INVALID_REQUEST),
    (_spec("def other(inputs):\n    return 1\n"), INVALID_REQUEST),
    (_spec(outputs={"kind": "pickle", "max_bytes": 10}), INVALID_REQUEST),
    (_spec(outputs={"kind": "json", "max_bytes": 1 << 40}), INVALID_REQUEST),
    (_spec(epsilon=-1), INVALID_REQUEST),
    (_spec(epsilon=True), INVALID_REQUEST),
    (_spec(dataset="enterprise_registry"), POLICY_DENIED),
    (_spec(purpose="marketing"), POLICY_DENIED),
])
def test_bad_specs_are_refused_at_submission(world, spec, code):
    with pytest.raises(DomainError) as e:
        CodeHandler().plan(spec, world.agreement(), world.datasets)
    assert e.value.code == code


def test_review_shows_the_code_its_hash_and_a_dry_run_on_the_mock(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    plan = h.plan(_spec(), ag, world.datasets)
    r = h.review(_spec(), plan, world.datasets, _env(world, ag, code_limits))
    assert r["source"] == SUMMARY and r["code_hash"] == plan.summary["code_hash"]
    assert r["input"]["columns"] == list(plan.summary["input"]["columns"])
    dry = r["dry_run_on_mock"]
    assert dry["ok"] is True and dry["on_mock"] is True, dry
    assert dry["output"]["columns"] == sorted(ag.document.columns["tax_income"])
    assert "rows seen: 100" in dry["stdout_tail"]  # the mock, not the 5000 real rows
    json.dumps(r, allow_nan=False)


def test_execute_runs_on_raw_data_and_waits_for_the_owner(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, _spec())
    out = h.execute(job, world.datasets, _env(world, ag, code_limits))
    gate.check("code", out, world.env.models_dir)
    assert out.kind == "json" and out.release == "owner" and out.model is None
    assert out.output_digest == digest_json(out.result)
    assert out.result["columns"] == sorted(ag.document.columns["tax_income"])
    assert out.owner_detail is not None and "rows seen: 5000" in out.owner_detail["stdout_tail"]
    assert out.owner_detail["code_hash"] == code_hash(SUMMARY, "main", {"kind": "json", "max_bytes": 65536})
    assert not (world.env.work_dir / "code" / job.id).exists()  # the projected copy is gone


def test_forbidden_columns_are_absent_from_the_codes_input(world, code_limits):
    h, ag = CodeHandler(), world.agreement(columns={"tax_income": ["district", "monthly_income"]})
    job = world.start(h, ag, _spec(PROBE))
    out = h.execute(job, world.datasets, _env(world, ag, code_limits))
    assert out.result == {"table": ["district", "monthly_income"], "file": ["district", "monthly_income"],
                          "listing": ["tax_income.parquet"]}
    for col in FORBIDDEN:
        assert col not in json.dumps(out.result)


def test_the_run_is_bound_to_the_approved_spec(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, _spec())
    tampered = replace(job, spec={**job.spec, "source": PROBE})  # spec changed behind the approval's back
    with pytest.raises(JobFailed) as e:
        h.execute(tampered, world.datasets, _env(world, ag, code_limits))
    assert e.value.reason == "code.spec_changed" and e.value.before_read  # refunded: nothing was read
    with pytest.raises(JobFailed) as e:
        h.execute(replace(job, cost=Budget(1)), world.datasets, _env(world, ag, code_limits))
    assert e.value.reason == "code.cost_changed" and e.value.before_read


def test_a_raising_run_gives_the_submitter_a_scrubbed_reason_and_the_owner_the_traceback(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    leak = 'def main(inputs):\n    raise ValueError("SECRET " + str(inputs["tax_income"].slice(0, 1).to_pylist()))\n'
    job = world.start(h, ag, _spec(leak))
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, _env(world, ag, code_limits))
    assert (e.value.reason, e.value.cause, e.value.before_read) == ("code.failed", "code.exception.ValueError", False)
    assert "SECRET" in (e.value.detail or "") and "SECRET" not in e.value.reason + e.value.cause


def test_the_job_wall_clock_caps_the_code(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, _spec("def main(inputs):\n    while True:\n        pass\n"))
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, replace(_env(world, ag, code_limits), timeout_s=2.0))
    assert (e.value.reason, e.value.cause, e.value.before_read) == ("code.failed", "code.timeout", False)


def test_output_over_the_declared_size_fails(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    spec = _spec("def main(inputs):\n    return 'x' * 5000\n", outputs={"kind": "json", "max_bytes": 1000})
    job = world.start(h, ag, spec)
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, _env(world, ag, code_limits))
    assert (e.value.reason, e.value.cause, e.value.before_read) == ("code.failed", "code.output_too_large", False)


def test_refuses_to_run_where_the_sandbox_is_unusable(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, _spec())
    env = _env(world, ag, code_limits, code_config=SandboxConfig(bwrap="/nonexistent/bwrap"))
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, env)
    assert (e.value.reason, e.value.cause) == ("worker.unavailable_before_read", "code.sandbox_unavailable")
    assert e.value.before_read and "bubblewrap" in (e.value.detail or "")
    assert not (world.env.work_dir / "code" / job.id).exists()  # nothing was staged
    review = h.review(_spec(), h.plan(_spec(), ag, world.datasets), world.datasets, env)
    assert review["dry_run_on_mock"] == {"ok": False, "reason": "sandbox.unavailable"}


def test_a_model_output_is_written_with_a_card_that_says_it_is_not_dp(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, _spec(MODEL, outputs={"kind": "model", "max_bytes": 4096}))
    out = h.execute(job, world.datasets, _env(world, ag, code_limits))
    gate.check("code", out, world.env.models_dir)
    assert out.kind == "model" and out.release == "owner"
    assert out.artifact == world.env.models_dir / job.id / "model.safetensors" and out.artifact.is_file()
    card = out.result["card"]
    assert card["differentially_private"] is False and card["tensors"] == {
        "b": {"dtype": "F32", "shape": [1]}, "w": {"dtype": "F32", "shape": [3]}}
    m = out.model
    assert m is not None and m["algorithm"] == "custom_code" and m["weights_path"] == f"{job.id}/model.safetensors"
    assert m["owner"] == "risk-lab" and m["source_datasets"] == {"tax_income": world.dataset.fingerprint}
    json.dumps(m, allow_nan=False)


def test_the_granted_columns_are_staged_on_a_tmpfs_and_removed_after_the_run(world, code_limits, monkeypatch):
    made: list[Any] = []
    real = tmpfs.private_dir

    def spy(root, label):
        made.append(real(root, label))
        return made[-1]

    monkeypatch.setattr(tmpfs, "private_dir", spy)
    (world.env.work_dir / "code" / "old-job").mkdir(parents=True)  # an older version's plaintext scratch
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, _spec())
    h.execute(job, world.datasets, _env(world, ag, code_limits))
    assert len(made) == 1 and tmpfs.filesystem_of(made[0].parent) in tmpfs.MEMORY_FILESYSTEMS
    assert not made[0].exists()  # removed after the run
    assert not (world.env.work_dir / "code").exists()  # nothing on the home's disk


def test_refuses_to_stage_without_a_tmpfs(world, code_limits, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if tmpfs.filesystem_of(disk) in tmpfs.MEMORY_FILESYSTEMS:
        pytest.skip("the test directory is itself on a tmpfs here")
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, _spec())
    env = _env(world, ag, code_limits, code_config=SandboxConfig(tmpfs_dir=str(disk)))
    with pytest.raises(JobFailed) as e:
        h.execute(job, world.datasets, env)
    assert (e.value.reason, e.value.cause) == ("worker.unavailable_before_read", "code.tmpfs_unavailable")
    assert e.value.before_read and list(disk.iterdir()) == []  # refunded; nothing written to the disk
