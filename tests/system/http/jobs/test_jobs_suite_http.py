"""An agreement's document hash and a query job's spec hash and output digest are the home suite's hash
(``sha256:`` intl, ``sm3:`` sm), the release gate lets that digest through, and the audit lineage finds the output
by it (docs/crypto.md)."""

from __future__ import annotations

import json

from cryptosuite import suite_of
from tests.conftest import BOTH_SUITES
from tests.system.http.jobs.test_jobs_query_http import COUNT_BY_DISTRICT, _approved_run


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@BOTH_SUITES
def test_a_query_job_is_digested_with_the_home_suite(parties, crypto_suite):
    suite = suite_of(crypto_suite)
    ag = parties.agreement(approval="owner_each_job")
    assert ag["document_hash"].startswith(suite.hash_name + ":")  # the agreement document hash too
    done, result = _approved_run(parties, ag["id"])
    assert done["state"] == "released" and done["failure_reason"] is None
    assert done["spec_hash"] == suite.digest(_canonical({"sql": COUNT_BY_DISTRICT, "epsilon": "0.5"}))
    # the digest covers the output as the release gate checked it; the source attribution and the output's
    # certificate are stamped beside it at the release
    body = {k: v for k, v in result["result"].items() if k not in ("output_digest", "source", "certificate_id")}
    assert result["result"]["source"] and result["result"]["certificate_id"].startswith("VBX-OC-")
    digest = suite.digest(_canonical(body))
    assert digest.startswith(suite.hash_name + ":")
    assert done["output_digest"] == result["result"]["output_digest"] == digest
    assert parties.regulator.lineage(digest)["job"]["id"] == done["id"]
