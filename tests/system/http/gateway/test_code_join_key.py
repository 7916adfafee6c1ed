"""``join_key`` columns are never granted to custom code: an agreement that allows ``code`` and grants a join key is
refused at proposal, and a code job under an agreement stored before that rule is refused at submission — both
``POLICY_DENIED`` with reason ``column.join_key_for_code``, audited. Over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies import _tables as pt
from veilbox.client import ApiError

GRANTED = ["district", "age", "monthly_income", "has_default"]
CODE = "def main(inputs):\n    return {'rows': inputs['tax_income'].num_rows}\n"


def refusal(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as e:
        call(*args)
    return e.value


def test_an_agreement_cannot_grant_a_join_key_to_custom_code(parties: Any) -> None:
    cols = {"tax_income": [*GRANTED, "employer_id"]}
    e = refusal(lambda: parties.agreement(columns=cols, job_kinds=["query", "code"], accept=False))
    assert (e.status, e.code) == (403, "POLICY_DENIED")
    assert {"reason": "column.join_key_for_code", "dataset": "tax_income", "column": "employer_id",
            "message": "a join_key column cannot be granted to custom code"} in e.details
    last = [x for x in parties.regulator.audit(limit=1000, action="agreement.create")["entries"]][-1]
    assert (last["decision"], last["code"], last["actor"]) == ("deny", "POLICY_DENIED", "city-tax-bureau")
    # the same key for queries only (joins are vetted there) is fine, and code without the key is fine
    parties.agreement(columns=cols, job_kinds=["query"], accept=False)
    parties.agreement(columns={"tax_income": GRANTED}, job_kinds=["query", "code"], accept=False)


def test_a_code_job_under_an_agreement_that_grants_a_join_key_is_refused(parties: Any) -> None:
    """An agreement stored before the rule (its document edited in place here) cannot hand the key to code."""
    ag = parties.agreement(columns={"tax_income": GRANTED}, job_kinds=["code"])
    with parties.service.ctx.engine.begin() as conn:
        row = conn.execute(pt.agreements.select().where(pt.agreements.c.id == ag["id"])).one()
        doc = json.loads(row.document_json)
        doc["columns"]["tax_income"] = sorted([*GRANTED, "employer_id"])
        conn.execute(pt.agreements.update().where(pt.agreements.c.id == ag["id"])
                     .values(document_json=json.dumps(doc)))
    spec = {"dataset": "tax_income", "source": CODE, "outputs": {"kind": "json", "max_bytes": 4096}}
    e = refusal(parties.operator.submit_job, ag["id"], "code", spec)
    assert (e.status, e.code) == (403, "POLICY_DENIED")
    assert e.details == [{"reason": "column.join_key_for_code", "dataset": "tax_income", "column": "employer_id"}]
    assert parties.operator.jobs() == []
    last = parties.regulator.audit(limit=1000, action="job.submit")["entries"][-1]
    assert (last["decision"], last["code"], last["actor"]) == ("deny", "POLICY_DENIED", "risk-lab")
