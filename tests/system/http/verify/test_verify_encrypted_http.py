"""Encrypted threshold checks over HTTP: the service never sees the bank's thresholds, the bank reads one sign
per subject, unknown subjects read "false", every subject is metered, and bad crypto input is refused."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tenseal as ts

from mpc.he import client as he
from veilbox import bank as bank_sdk
from veilbox.client import ApiError


def codes(call, *a, **kw) -> tuple[str, int, list]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status, e.value.details


@pytest.fixture(scope="module")
def bfv() -> bank_sdk.BfvKeys:
    return bank_sdk.verification_keys()


def test_threshold_checks_under_encryption(world, bfv):
    rows = list(world.rows.values())[:6]
    subjects = [r["person_id"] for r in rows] + ["P9999999", "P8888888"]
    incomes = [r["monthly_income"] for r in rows]
    # boundaries: exactly the floor of the income (passes), one above (fails), the bounds of the product
    thresholds = [int(incomes[0]), int(incomes[1]) + 1, 0, 200_000, 5000, 12_000, 0, 1]
    got, receipt = bank_sdk.check_thresholds(world.bank, "income_at_least", world.agreement["id"], subjects,
                                             thresholds, consent_ref="consent-enc", keys=bfv)
    expected = [inc >= t for inc, t in zip(incomes, thresholds, strict=False)] + [False, False]
    assert got == expected
    assert got[0] is True and got[1] is False and got[2] is True and got[6] is False  # unknown, even at t = 0
    claims = bank_sdk.verify_receipt(receipt, world.bank.audit_public_key()["pem"])
    assert claims["kind"] == "verification.encrypted" and claims["subjects"] == 8


def test_at_most_products_are_answered_with_negated_thresholds(world, bfv):
    rows = list(world.rows.values())[:4]
    subjects = [r["person_id"] for r in rows] + ["P9999999"]
    months = [r["social_insurance_months"] for r in rows]
    thresholds = [months[0], months[1] - 1, 480, 0, 480]
    got, _ = bank_sdk.check_thresholds(world.bank, "insured_months_at_most", world.agreement["id"], subjects,
                                       thresholds, consent_ref="c", keys=bfv)
    assert got == [m <= t for m, t in zip(months, thresholds, strict=False)] + [False]


def test_the_bank_learns_signs_but_the_slots_are_masked(world, bfv):
    """Two subjects with the same answer give unrelated masked values; the server never decrypts anything."""
    subjects = [r["person_id"] for r in list(world.rows.values())[:2]]
    ct = he.encrypt_thresholds(bfv.context, np.array([0, 0]))
    out = world.bank.check_encrypted("income_at_least", world.agreement["id"], subjects, bfv.public, ct,
                                     consent_ref="c")
    values = he.decrypt_masked(bfv.context, out["ciphertext"])
    assert (values > 0).all() and values[0] != values[1]  # fresh r, r' per slot


def test_only_single_threshold_products_have_an_encrypted_form(world, bfv):
    ct = he.encrypt_thresholds(bfv.context, np.array([1]))
    for name in ("declared_income", "is_registered"):
        code, status, _ = codes(world.bank.check_encrypted, name, world.agreement["id"], ["P0000001"], bfv.public,
                                ct, consent_ref="c")
        assert (code, status) == ("INVALID_REQUEST", 422)


def test_every_subject_is_metered_and_each_encrypted_check_is_a_new_parameter(world, bfv):
    """The threshold is hidden, so each encrypted check consumes one of the subject's distinct values."""
    ag = world.parties.agreement("icbc-wuxi", quotas={"verify_per_subject_per_day": 100,
                                                      "distinct_params_per_subject": 2})
    pids = [r["person_id"] for r in list(world.rows.values())[:3]]
    for _ in range(2):
        bank_sdk.check_thresholds(world.bank, "income_at_least", ag["id"], pids[:2], [1, 1], consent_ref="c",
                                  keys=bfv)
    code, _, details = codes(bank_sdk.check_thresholds, world.bank, "income_at_least", ag["id"], [pids[2], pids[0]],
                             [1, 1], consent_ref="c", keys=bfv)
    assert code == "QUOTA_EXCEEDED" and details[-1] == {"subject_index": 1}
    # all or nothing: the refused batch did not use pids[2]'s allowance
    for t in (5, 6):
        world.bank.check("income_at_least", ag["id"], pids[2], {"threshold": t}, consent_ref="c")
    # and the plain check of pids[0] is refused too: it shares the subject's cap
    assert codes(world.bank.check, "income_at_least", ag["id"], pids[0], {"threshold": 1}, consent_ref="c")[0] \
        == "QUOTA_EXCEEDED"


def _secret_context_b64(ctx: ts.Context) -> str:
    return base64.b64encode(ctx.serialize(save_secret_key=True)).decode()


def test_bad_crypto_input_is_refused_and_audited(world, bfv):
    ag = world.agreement["id"]
    pid = next(iter(world.rows))
    good_ct = he.encrypt_thresholds(bfv.context, np.array([1]))
    other = bank_sdk.verification_keys()
    small_p = he.make_bfv_context(plain_modulus_bits=20)
    ckks = he.make_ckks_context()
    cases = {
        "garbage context": ("!!!not base64!!!", good_ct),
        "garbage bytes": (base64.b64encode(b"\x00" * 4000).decode(), good_ct),
        "secret-key context": (_secret_context_b64(bfv.context), good_ct),
        "ckks context": (he.public_context_b64(ckks, galois_keys=False), good_ct),
        "too small plain modulus": (he.public_context_b64(small_p, galois_keys=False), good_ct),
        "ciphertext of another context": (bfv.public, he.encrypt_thresholds(small_p, np.array([1]))),
        "garbage ciphertext": (bfv.public, base64.b64encode(b"\x01" * 300).decode()),
        "wrong slot count": (bfv.public, he.encrypt_thresholds(other.context, np.array([1, 2, 3]))),
    }
    seen = []
    for label, (context, ct) in cases.items():
        code, status, _ = codes(world.bank.check_encrypted, "income_at_least", ag, [pid], context, ct,
                                consent_ref="c")
        assert (code, status) in {("CIPHERTEXT_INVALID", 422), ("INVALID_REQUEST", 422)}, label
        seen.append(code)
    assert "CIPHERTEXT_INVALID" in seen
    entries = world.parties.regulator.audit(limit=1000, action="verify.check_encrypted")["entries"]
    assert len(entries) == len(cases) and all(e["decision"] == "deny" for e in entries)
    details = [e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]) for e in entries]
    assert all(d["subject_hashes"] == [world.parties.service.ctx.keys.subject_hash(pid)] for d in details)
    assert pid not in json.dumps(entries)
    # the service is still up and answers correctly
    got, _ = bank_sdk.check_thresholds(world.bank, "income_at_least", ag, [pid], [0], consent_ref="c", keys=bfv)
    assert got == [True]


def test_too_many_subjects_or_unknown_products(world, bfv):
    ag = world.agreement["id"]
    ct = he.encrypt_thresholds(bfv.context, np.array([1]))
    assert codes(world.bank.check_encrypted, "income_at_least", ag, ["P1"] * 1025, bfv.public, ct,
                 consent_ref="c")[0] == "INVALID_REQUEST"
    assert codes(world.bank.check_encrypted, "nope", ag, ["P1"], bfv.public, ct, consent_ref="c")[0] \
        == "NOT_FOUND_OR_FORBIDDEN"
    # a principal who is no party to the agreement cannot even learn it exists
    assert codes(world.parties.operator.check_encrypted, "income_at_least", ag, ["P1"], bfv.public, ct,
                 consent_ref="c")[0] == "NOT_FOUND_OR_FORBIDDEN"
