"""Encrypted threshold checks through the binary body (`gateway.he_frames`): the same answers as the JSON form;
a malformed frame, a truncated ciphertext or an oversize body is refused with a stable code and meters nothing."""

from __future__ import annotations

import base64
import struct

import httpx
import numpy as np
import pytest

from gateway.he_frames import MEDIA_TYPE, encode_frame
from mpc.he import client as he
from veilbox import bank as bank_sdk
from veilbox.client import ApiError
from veilbox.client import decode_frame as sdk_decode_frame


@pytest.fixture(scope="module")
def bfv() -> bank_sdk.BfvKeys:
    return bank_sdk.verification_keys()


def _post(world, name: str, content: bytes, accept: str = MEDIA_TYPE) -> httpx.Response:
    headers = {"Content-Type": MEDIA_TYPE, "Accept": accept,
               "Authorization": world.parties.bank._http.headers["Authorization"]}
    return httpx.post(f"{world.parties.service.url}/v1/verifications/{name}/check-encrypted", content=content,
                      headers=headers, timeout=120)


def test_binary_checks_equal_the_json_form(world, bfv):
    rows = list(world.rows.values())[:4]
    subjects = [r["person_id"] for r in rows] + ["P9999999"]
    thresholds = [int(rows[0]["monthly_income"]), int(rows[1]["monthly_income"]) + 1, 0, 200_000, 0]
    expected = [r["monthly_income"] >= t for r, t in zip(rows, thresholds, strict=False)] + [False]
    ct = he.encrypt_thresholds(bfv.context, np.asarray(thresholds))
    ag = world.parties.agreement("icbc-wuxi", quotas={"verify_per_subject_per_day": 100,
                                                      "distinct_params_per_subject": 10})["id"]
    as_json = world.bank.check_encrypted("income_at_least", ag, subjects, bfv.public, ct, consent_ref="c",
                                         binary=False)
    as_frame = world.bank.check_encrypted("income_at_least", ag, subjects, bfv.public, ct, consent_ref="c")
    for out in (as_json, as_frame):
        assert [bool(s) for s in he.read_signs(bfv.context, out["ciphertext"])[:5]] == expected
        claims = bank_sdk.verify_receipt(out["receipt"], world.bank.audit_public_key()["pem"])
        assert claims["kind"] == "verification.encrypted" and claims["subjects"] == 5
    # the same request digest whatever the form
    assert (bank_sdk.verify_receipt(as_json["receipt"], world.bank.audit_public_key()["pem"])["request_digest"]
            == bank_sdk.verify_receipt(as_frame["receipt"], world.bank.audit_public_key()["pem"])["request_digest"])
    frame = encode_frame({"agreement_id": ag, "subjects": subjects, "consent_ref": "c"},
                         [("context", base64.b64decode(bfv.public)), ("ciphertext", base64.b64decode(ct))])
    r = _post(world, "income_at_least", frame)
    assert r.status_code == 200 and r.headers["content-type"] == MEDIA_TYPE
    header, blobs = sdk_decode_frame(r.content)
    assert set(header) == {"receipt", "certificate_id"} and [n for n, _ in blobs] == ["ciphertext"]
    signs = he.read_signs(bfv.context, base64.b64encode(blobs[0][1]).decode())
    assert [bool(s) for s in signs[:5]] == expected
    got, _ = bank_sdk.check_thresholds(world.bank, "income_at_least", ag, subjects, thresholds, consent_ref="c",
                                       keys=bfv)  # the SDK's default form
    assert got == expected


def test_malformed_frames_are_refused_with_stable_codes_and_meter_nothing(world, bfv):
    """With one check a day per subject, every refused frame leaves that check to a good request."""
    ag = world.parties.agreement("icbc-wuxi", quotas={"verify_per_subject_per_day": 1})["id"]
    pid = next(iter(world.rows))
    ctx = base64.b64decode(bfv.public)
    ct = base64.b64decode(he.encrypt_thresholds(bfv.context, np.array([1])))
    header = {"agreement_id": ag, "subjects": [pid], "consent_ref": "c"}
    good = encode_frame(header, [("context", ctx), ("ciphertext", ct)])
    invalid_request = {
        "empty body": b"",
        "no magic": b"XXXX" + good[4:],
        "header longer than the body": b"VBHE\x01" + struct.pack(">I", 10**6) + b"{}",
        "header not JSON": b"VBHE\x01" + struct.pack(">I", 3) + b"{x}",
        "blob of a list field": encode_frame(header, [("subjects", b"P1"), ("context", ctx), ("ciphertext", ct)]),
        "bytes after the last blob": good + b"\x00\x00",
        "blob cut short": good[:-10],
        "no ciphertext": encode_frame(header, [("context", ctx)]),
        "subjects missing": encode_frame({"agreement_id": ag, "consent_ref": "c"},
                                         [("context", ctx), ("ciphertext", ct)]),
    }
    for label, body in invalid_request.items():
        r = _post(world, "income_at_least", body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "INVALID_REQUEST"), label
    for label, body in {"truncated ciphertext": encode_frame(header, [("context", ctx), ("ciphertext", ct[:200])]),
                        "empty ciphertext": encode_frame(header, [("context", ctx), ("ciphertext", b"")]),
                        "truncated context": encode_frame(header, [("context", ctx[:500]), ("ciphertext", ct)])
                        }.items():
        r = _post(world, "income_at_least", body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "CIPHERTEXT_INVALID"), label
    huge = good + b"\x00" * world.parties.service.settings.max_body_bytes
    r = _post(world, "income_at_least", huge)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "INVALID_REQUEST")
    entries = world.parties.regulator.audit(limit=1000, action="verify.check_encrypted")["entries"]
    assert len(entries) == len(invalid_request) + 3 and all(e["decision"] == "deny" for e in entries)
    # nothing was metered: the subject's one check of the day is still there, then spent
    r = _post(world, "income_at_least", good)
    assert r.status_code == 200
    with pytest.raises(ApiError) as e:
        world.bank.check_encrypted("income_at_least", ag, [pid], bfv.public,
                                   he.encrypt_thresholds(bfv.context, np.array([1])), consent_ref="c")
    assert e.value.code == "QUOTA_EXCEEDED"
