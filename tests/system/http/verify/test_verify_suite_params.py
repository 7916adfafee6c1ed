"""A verification question's digest (``params_digest``: the receipt's claim, the audit entry's detail and the
distinct-value cap's meter) is the home suite's hash: ``sm3:`` in an sm home (``sha256:`` in intl, pinned by the
other verification tests)."""

from __future__ import annotations

import json

import pytest

import policies
from veilbox import bank as bank_sdk


@pytest.mark.parametrize("crypto_suite", ["sm"])
def test_an_sm_homes_question_digest_is_sm3(world, crypto_suite):
    row = next(iter(world.rows.values()))
    ag = world.agreement["id"]
    r = world.bank.check("income_at_least", ag, row["person_id"], {"threshold": 1000}, consent_ref="c")
    claims = bank_sdk.verify_receipt(r["receipt"], world.bank.audit_public_key()["pem"])
    assert claims["params_digest"].startswith("sm3:")
    assert claims["params_digest"] == policies.params_digest({"product": "income_at_least",
                                                              "params": {"threshold": 1000}}, "sm3")
    entries = world.parties.regulator.audit(limit=100, action="verify.check")["entries"]
    details = [json.loads(e["details"]) if isinstance(e["details"], str) else e["details"] for e in entries]
    assert claims["params_digest"] in {d.get("params_digest") for d in details}
