"""Custom code in an sm home: a job submitted with an ``sm3:`` spec hash runs (the handler checks the spec with the
home's hash), its run is bound to the ``sm3:`` code hash, and its output digest is ``sm3:``."""

from __future__ import annotations

from dataclasses import replace

from policies import spec_hash
from sandbox.coderun import code_hash
from sandbox.jobs import digest_json
from sandbox.jobs.code import CodeHandler

SOURCE = "def main(inputs):\n    return {'rows': inputs['tax_income'].num_rows > 0}\n"
SPEC = {"dataset": "tax_income", "source": SOURCE, "entrypoint": "main",
        "outputs": {"kind": "json", "max_bytes": 65536}}


def test_an_sm_homes_code_job_runs_under_sm3(world, code_limits):
    h, ag = CodeHandler(), world.agreement()
    job = world.start(h, ag, SPEC)
    sm_job = replace(job, spec_hash=spec_hash(job.spec, "sm3"))  # as an sm home records it at submission
    env = replace(world.env_for(ag, extra={"code_limits": code_limits}), hash_alg="sm3")
    out = h.execute(sm_job, world.datasets, env)
    assert out.result == {"rows": True} and out.output_digest == digest_json({"rows": True}, "sm3")
    assert out.owner_detail is not None
    assert out.owner_detail["code_hash"] == code_hash(SOURCE, "main", SPEC["outputs"], "sm3")
    assert out.owner_detail["code_hash"].startswith("sm3:")
