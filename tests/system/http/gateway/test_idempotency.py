"""Idempotent retries of charging calls (`gateway.services.idempotency`, docs/api.md "Retries"): a retry with the
same ``Idempotency-Key`` by the same principal gets the first answer byte for byte, charged and counted once; the
same key with another request is refused (``idempotency.key_reused``); keys are per principal; a malformed key
is refused before anything runs."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.services.idempotency import INVALID_KEY_REASON, REUSED_REASON
from tests.conftest import ON_SQLITE

SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
INCOME_AT_LEAST = {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                   "predicate": "monthly_income >= :threshold", "params": {"threshold": "number"}}


def _post(client: Any, path: str, body: dict[str, Any], key: str | bytes | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    r: httpx.Response = client._http.request("POST", path, json=body, headers=headers)
    return r


def _reason(r: httpx.Response) -> str:
    return str(r.json()["error"]["details"][0]["reason"])


def test_retried_query_is_charged_once_and_answers_identically(parties):
    ag = parties.agreement()
    body = {"agreement_id": ag["id"], "sql": SQL, "epsilon": 0.5}
    first = _post(parties.operator, "/v1/queries", body, "q-1")
    assert first.status_code == 200, first.text
    spent = parties.operator.budget(ag["id"])
    again = _post(parties.operator, "/v1/queries", body, "q-1")
    assert (again.status_code, again.content) == (first.status_code, first.content)  # byte-identical replay
    assert parties.operator.budget(ag["id"]) == spent  # charged once
    other = _post(parties.operator, "/v1/queries", body, "q-2")  # a new key is a new query, charged again
    assert other.status_code == 200 and other.content != first.content
    assert parties.operator.budget(ag["id"]) != spent


def test_same_key_with_another_request_is_refused(parties):
    ag = parties.agreement()
    body = {"agreement_id": ag["id"], "sql": SQL, "epsilon": 0.5}
    assert _post(parties.operator, "/v1/queries", body, "k").status_code == 200
    spent = parties.operator.budget(ag["id"])
    r = _post(parties.operator, "/v1/queries", {**body, "epsilon": 0.25}, "k")
    assert (r.status_code, r.json()["error"]["code"], _reason(r)) == (422, "INVALID_REQUEST", REUSED_REASON)
    r = _post(parties.operator, "/v1/queries/preview", body, "k")  # another path is another request
    assert r.status_code == 200  # the preview charges nothing and takes no key
    assert parties.operator.budget(ag["id"]) == spent


def test_keys_are_per_principal(parties):
    ag = parties.agreement()
    other_lab = parties.service.principal("other-lab", "operator")
    ag2 = parties.agreement("other-lab", accept=False)
    other_lab.accept_agreement(ag2["id"])
    a = _post(parties.operator, "/v1/queries", {"agreement_id": ag["id"], "sql": SQL, "epsilon": 0.5}, "shared")
    b = _post(other_lab, "/v1/queries", {"agreement_id": ag2["id"], "sql": SQL, "epsilon": 0.25}, "shared")
    assert a.status_code == 200 and b.status_code == 200, b.text  # the other's key is no reuse
    assert parties.operator.budget(ag["id"]) != other_lab.budget(ag2["id"])  # each charged its own ε


def test_retried_job_submission_creates_one_job(parties):
    ag = parties.agreement(approval="owner_each_job")
    body = {"agreement_id": ag["id"], "kind": "query", "spec": {"sql": SQL, "epsilon": 0.5}}
    first = _post(parties.operator, "/v1/jobs", body, "job-1")
    assert first.status_code == 202, first.text
    again = _post(parties.operator, "/v1/jobs", body, "job-1")
    assert (again.status_code, again.content) == (first.status_code, first.content)
    jobs = parties.operator._http.request("GET", "/v1/jobs").json()
    assert [j["id"] for j in jobs] == [first.json()["id"]]


def test_retried_plain_check_counts_once(parties):
    parties.owner.define_verification(INCOME_AT_LEAST)
    ag = parties.agreement("icbc-wuxi", quotas={"calls_per_day": 10000, "verify_per_subject_per_day": 2})
    body = {"agreement_id": ag["id"], "subject": "P0000001", "params": {"threshold": 8000},
            "consent_ref": "consent-1"}
    path = "/v1/verifications/income_at_least/check"
    first = _post(parties.bank, path, body, "chk-1")
    assert first.status_code == 200, first.text
    for _ in range(3):  # retries count nothing: the per-subject quota (2 a day) still has one call left
        again = _post(parties.bank, path, body, "chk-1")
        assert (again.status_code, again.content) == (200, first.content)
    assert _post(parties.bank, path, body, "chk-2").status_code == 200
    r = _post(parties.bank, path, body, "chk-3")
    assert (r.status_code, r.json()["error"]["code"]) == (429, "QUOTA_EXCEEDED")


@ON_SQLITE
def test_malformed_key_is_refused_before_anything_runs(parties):
    ag = parties.agreement()
    body = {"agreement_id": ag["id"], "sql": SQL, "epsilon": 0.5}
    before = parties.operator.budget(ag["id"])
    for bad in ("", "x" * 129, "naïve".encode(), "has space", "tab\tin"):
        r = _post(parties.operator, "/v1/queries", body, bad)
        assert (r.status_code, r.json()["error"]["code"], _reason(r)) == (422, "INVALID_REQUEST",
                                                                         INVALID_KEY_REASON), bad
    assert parties.operator.budget(ag["id"]) == before
    assert _post(parties.operator, "/v1/queries", body, "x" * 128).status_code == 200


def test_a_refusal_is_replayed_as_the_same_refusal(parties):
    body = {"agreement_id": "agr_does_not_exist", "sql": SQL, "epsilon": 0.5}
    first = _post(parties.operator, "/v1/queries", body, "refused")
    assert first.status_code == 404
    again = _post(parties.operator, "/v1/queries", body, "refused")
    assert (again.status_code, again.content) == (first.status_code, first.content)
