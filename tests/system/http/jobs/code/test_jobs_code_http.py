"""Custom-code jobs over real HTTP: the owner reviews the code and its dry run, approves it bound to the spec
hash, the worker runs it in the sandbox, and nothing leaves until the owner releases it; a run that started is
charged whatever happens, the grantee sees only ``code.failed``, and the cause and traceback go to the owner only."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction

import pytest

from gateway.services import jobs as jobflow
from sandbox.coderun import SandboxConfig
from veilbox.client import ApiError

SOURCE = '''
import pyarrow.compute as pc

def main(inputs):
    t = inputs["tax_income"]
    print("computed over", t.num_rows, "rows")
    return {"columns": sorted(t.column_names), "mean_income": round(pc.mean(t["monthly_income"]).as_py(), -3)}
'''


def _spec(source: str = SOURCE, **kw):
    return {"dataset": "tax_income", "source": source, "entrypoint": "main",
            "outputs": {"kind": "json", "max_bytes": 65536}, **kw}


def _spent(parties, ag_id: str) -> Fraction:
    return Fraction(parties.operator.budget(ag_id)["exact"]["epsilon_spent"])


def test_code_job_waits_for_the_owners_release(parties):
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "code", _spec(epsilon="0.25"))
    assert job["state"] == "pending_approval"

    review = parties.owner.job_review(job["id"])
    assert review["plan"]["code_hash"].startswith("sha256:") and review["plan"]["release"] == "owner"
    mock = review["mock"]
    assert mock["source"] == SOURCE and mock["code_hash"] == review["plan"]["code_hash"]
    assert mock["dry_run_on_mock"]["ok"] is True and "computed over 100 rows" in mock["dry_run_on_mock"]["stdout_tail"]
    assert "person_id" not in mock["input"]["columns"] and "id_number" not in mock["input"]["columns"]

    with pytest.raises(ApiError):  # approval must name the hash of what was reviewed
        parties.owner.approve_job(job["id"], "sha256:" + "0" * 64)
    parties.owner.approve_job(job["id"], job["spec_hash"])
    done = parties.operator.wait_job(job["id"], timeout=120)
    assert done["state"] == "succeeded", done
    assert _spent(parties, ag["id"]) == Fraction(1, 4)

    with pytest.raises(ApiError) as e:  # nothing leaves before the owner's release
        parties.operator.job_result(job["id"])
    assert e.value.code == "INVALID_REQUEST"
    with pytest.raises(ApiError):  # the grantee cannot release it
        parties.operator.release_job(job["id"])

    owner_view = parties.owner.job_review(job["id"])
    pending = owner_view["pending_output"]
    assert pending["kind"] == "json" and pending["result"]["columns"] == sorted(ag["columns"]["tax_income"])
    assert "computed over 5000 rows" in owner_view["owner_detail"]["stdout_tail"]
    assert "owner_detail" not in parties.operator.job_review(job["id"])


def test_the_owners_release_hands_the_output_to_the_grantee(parties):
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "code", _spec(epsilon="0.25"))
    parties.owner.approve_job(job["id"], job["spec_hash"])
    assert parties.operator.wait_job(job["id"], timeout=120)["state"] == "succeeded"
    pending = parties.owner.job_review(job["id"])["pending_output"]
    released = parties.owner.release_job(job["id"])
    assert released["state"] == "released"
    result = parties.operator.job_result(job["id"])
    stamp = {"source", "certificate_id"}  # added at release (docs/certificates.md), outside the output digest
    assert {k: v for k, v in result["result"].items() if k not in stamp} == pending["result"]
    assert result["result"]["source"][0]["dataset"] == "tax_income"
    assert result["output_digest"] == pending["output_digest"]
    assert _spent(parties, ag["id"]) == Fraction(1, 4)


FAILURES = {
    "raises": 'def main(inputs):\n    raise ValueError("SECRET-" + str(inputs["tax_income"].num_rows))\n',
    "times out": 'def main(inputs):\n    while inputs["tax_income"].num_rows:\n        pass\n',
    "too large": 'def main(inputs):\n    return "x" * (70000 + inputs["tax_income"].num_rows)\n',
    "exits": 'import os\n\ndef main(inputs):\n    os._exit(inputs["tax_income"].num_rows % 7 + 3)\n',
}
CAUSES = {"raises": "code.exception.ValueError", "times out": "code.timeout", "too large": "code.output_too_large",
          "exits": "code.exited"}


def test_every_failing_run_says_only_failed_is_charged_and_the_owner_sees_the_cause(parties):
    rt = jobflow.runtime(parties.service.ctx)
    base = rt.env
    ag = parties.agreement(approval="owner_each_job")
    seen = []
    for name, source in FAILURES.items():
        wall = 2 if name == "times out" else 60  # only the endless loop meets its wall clock
        rt.env = replace(base, extra={**base.extra, "code_limits": {"wall_seconds": wall, "cpu_seconds": 20,
                                                                    "memory_bytes": 1 << 30}})
        job = parties.operator.submit_job(ag["id"], "code", _spec(source, epsilon="0.25"))
        parties.owner.approve_job(job["id"], job["spec_hash"])
        done = parties.operator.wait_job(job["id"], timeout=120)
        seen.append({k: done[k] for k in ("state", "failure_reason", "output_digest", "cost")})
        assert "SECRET-5000" not in str(parties.operator.job_review(job["id"])) + str(done)
        assert "owner_detail" not in parties.operator.job_review(job["id"])
        detail = parties.owner.job_review(job["id"])["owner_detail"]
        assert detail["failure"] == CAUSES[name], name
        if name == "raises":
            assert "SECRET-5000" in detail["failure_detail"]
    assert seen == [{"state": "failed", "failure_reason": "code.failed", "output_digest": None,
                     "cost": {"epsilon": "0.25", "delta": "0"}}] * len(FAILURES)
    assert _spent(parties, ag["id"]) == Fraction(len(FAILURES), 4)  # charged like releases: no refund
    assert parties.operator.audit(action="job.incident")["entries"] == []
    causes = [e["details"] if isinstance(e["details"], dict) else json.loads(e["details"])
              for e in parties.owner.audit(action="job.incident")["entries"]]
    assert [c["cause"] for c in causes] == list(CAUSES.values())


def test_a_host_without_the_sandbox_refunds_and_says_it_never_read(parties):
    rt = jobflow.runtime(parties.service.ctx)
    rt.env = replace(rt.env, extra={**rt.env.extra, "code_config": SandboxConfig(bwrap="/nonexistent/bwrap")})
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "code", _spec(epsilon="0.5"))
    parties.owner.approve_job(job["id"], job["spec_hash"])
    done = parties.operator.wait_job(job["id"], timeout=120)
    assert (done["state"], done["failure_reason"]) == ("failed", "worker.unavailable_before_read")
    assert _spent(parties, ag["id"]) == 0  # refunded: nothing was read


def test_the_owner_may_refuse_to_release_and_the_charge_stays(parties):
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "code", _spec(epsilon="0.5"))
    parties.owner.approve_job(job["id"], job["spec_hash"])
    assert parties.operator.wait_job(job["id"], timeout=120)["state"] == "succeeded"
    refused = parties.owner.reject_job(job["id"], "the output reveals too much")
    assert refused["state"] == "failed" and refused["failure_reason"] == "release.refused_by_owner"
    assert _spent(parties, ag["id"]) == Fraction(1, 2)  # the code ran on the data
    with pytest.raises(ApiError):
        parties.operator.job_result(job["id"])
