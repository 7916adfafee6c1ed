"""Encrypted scoring through the binary body (`gateway.he_frames`, ``application/vnd.veilbox.he+octet-stream``):
the same decisions as the JSON form; a malformed frame, a truncated ciphertext or an oversize body is refused with
a stable code, audited, and meters nothing."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import numpy as np
import pytest

from catalog import models
from gateway.he_frames import MEDIA_TYPE, decode_frame, encode_frame
from mpc.he import client as he
from veilbox import bank as bank_sdk
from veilbox.client import decode_frame as sdk_decode_frame
from veilbox.client import encode_frame as sdk_encode_frame


def _post(world, path: str, content: bytes, accept: str = MEDIA_TYPE, content_type: str = MEDIA_TYPE,
          token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": content_type, "Accept": accept,
               "Authorization": f"Bearer {token or world.parties.bank._http.headers['Authorization'][7:]}"}
    return httpx.post(f"{world.parties.service.url}{path}", content=content, headers=headers, timeout=120)


def _usage(world, agreement_id: str, model_id: str) -> tuple[int, int]:
    engine = world.parties.service.ctx.engine
    return (models.score_usage(engine, agreement_id, model_id, "decision"),
            models.score_usage(engine, agreement_id, model_id, "logit"))


def _raw(b64: str) -> bytes:
    return base64.b64decode(b64)


def test_the_sdk_and_the_service_frame_alike():
    header = {"layout": "columns", "agreement_id": "agr_1"}
    blobs = [("context", b"\x00ctx"), ("ciphertexts", b"a"), ("ciphertexts", b""), ("cutoff", b"\xff" * 3)]
    frame = sdk_encode_frame(header, blobs)
    assert frame == encode_frame(header, blobs)
    assert sdk_decode_frame(frame) == (header, blobs)
    fields = decode_frame(frame, ("ciphertexts",), ("context", "cutoff"))
    assert fields == {"layout": "columns", "agreement_id": "agr_1", "context": base64.b64encode(b"\x00ctx").decode(),
                      "ciphertexts": ["YQ==", ""], "cutoff": base64.b64encode(b"\xff" * 3).decode()}


def test_binary_decisions_equal_the_json_form(sworld, applicants, columns_keys):
    """One set of encrypted applicants scored through both forms decrypts to the same decisions (the plaintext
    model's); both are metered alike and audited with the same request digest."""
    ag, mid = sworld.agreement["id"], sworld.model.id
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:16])
    s = sworld.logits(x)
    t = s + np.where(np.arange(16) % 2 == 0, 3.0, -3.0)
    cts = he.encrypt_columns(columns_keys.context, x)
    cut = he.encrypt_cutoffs(columns_keys.context, t)
    as_json = sworld.bank.score(mid, columns_keys.public, cts, "columns", ag, cutoff=cut, binary=False)
    as_frame = sworld.bank.score(mid, columns_keys.public, cts, "columns", ag, cutoff=cut)  # the SDK's default
    for out in (as_json, as_frame):
        got = he.decrypt_decisions(columns_keys.context, out["ciphertexts"], "columns")[:16]
        assert np.array_equal(got, s >= t)
        assert out["scores_counted"] == 32 and out["output"] == "decision" and out["layout"] == "columns"
    assert as_frame["scores_used"] == 64 and _usage(sworld, ag, mid) == (64, 0)
    # the answer is a frame when asked for: its header is the JSON answer's other fields
    frame = encode_frame({"layout": "columns", "agreement_id": ag},
                         [("context", _raw(columns_keys.public)), *(("ciphertexts", _raw(c)) for c in cts),
                          ("cutoff", _raw(cut))])
    r = _post(sworld, f"/v1/models/{mid}/score", frame)
    assert r.status_code == 200 and r.headers["content-type"] == MEDIA_TYPE
    header, blobs = sdk_decode_frame(r.content)
    assert header == {"layout": "columns", "output": "decision", "scores_counted": 32, "scores_used": 96,
                      "scores_limit": models.DEFAULT_DECISION_LIMIT}
    assert [n for n, _ in blobs] == ["ciphertexts"]
    got = he.decrypt_decisions(columns_keys.context, [base64.b64encode(blobs[0][1]).decode()], "columns")[:16]
    assert np.array_equal(got, s >= t)
    # a JSON answer unless asked for the frame
    r = _post(sworld, f"/v1/models/{mid}/score", frame, accept="application/json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert len(r.json()["ciphertexts"]) == 1
    entries = sworld.parties.regulator.audit(limit=100, action="model.score")["entries"]
    digests = {(e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]))["request_digest"]
               for e in entries}
    assert len(entries) == 4 and len(digests) == 1  # the same request in either form


def test_sdk_batches_use_the_binary_column_form_by_default(sworld, applicants, columns_keys):
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:8])
    out = bank_sdk.decide_applicants(sworld.bank, sworld.model.id, x, 0.0, keys=columns_keys,
                                     agreement_id=sworld.agreement["id"])
    assert np.array_equal(out.decisions, sworld.logits(x) >= 0.0)
    assert bank_sdk.decide_applicants.__kwdefaults__["layout"] == "columns"


def test_malformed_frames_are_refused_with_stable_codes_and_meter_nothing(sworld, applicants, columns_keys):
    ag, mid = sworld.agreement["id"], sworld.model.id
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    cts = [_raw(c) for c in he.encrypt_columns(columns_keys.context, x)]
    cut = _raw(he.encrypt_cutoffs(columns_keys.context, np.zeros(2)))
    ctx = _raw(columns_keys.public)
    header = {"layout": "columns", "agreement_id": ag}
    good = encode_frame(header, [("context", ctx), *(("ciphertexts", c) for c in cts), ("cutoff", cut)])
    head = json.dumps({**header, "blobs": ["context"]}).encode()
    invalid_request = {
        "empty body": b"",
        "no magic": b"JSON" + good[4:],
        "another version": b"VBHE\x02" + good[5:],
        "header longer than the body": b"VBHE\x01" + struct.pack(">I", 10**6) + b"{}",
        "header not JSON": b"VBHE\x01" + struct.pack(">I", 3) + b"{x}",
        "header not an object": b"VBHE\x01" + struct.pack(">I", 2) + b"[]",
        "header with NaN": b"VBHE\x01" + struct.pack(">I", 20) + b'{"blobs":[],"a":NaN}',
        "blobs missing": b"VBHE\x01" + struct.pack(">I", 2) + b"{}",
        "blob names a plain field": encode_frame(header, [("layout", b"x")]),
        "ciphertext in the header": encode_frame({**header, "context": "AAAA"}, [("cutoff", cut)]),
        "a scalar field twice": encode_frame(header, [("context", ctx), ("context", ctx)]),
        "blob length beyond the body": b"VBHE\x01" + struct.pack(">I", len(head)) + head + struct.pack(">I", 9) + b"ab",
        "blob length cut": b"VBHE\x01" + struct.pack(">I", len(head)) + head + b"\x00\x00",
        "bytes after the last blob": good + b"\x00",
        "unknown header field": encode_frame({**header, "weights": True}, [("context", ctx)]),
        "no ciphertexts": encode_frame(header, [("context", ctx), ("cutoff", cut)]),
    }
    for label, body in invalid_request.items():
        r = _post(sworld, f"/v1/models/{mid}/score", body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "INVALID_REQUEST"), label
    truncated = encode_frame(header, [("context", ctx), ("ciphertexts", cts[0][: len(cts[0]) // 2]),
                                      *(("ciphertexts", c) for c in cts[1:]), ("cutoff", cut)])
    empty = encode_frame(header, [("context", ctx), *(("ciphertexts", c) for c in cts), ("cutoff", b"")])
    for label, body in {"truncated ciphertext": truncated, "empty cut-off": empty,
                        "truncated context": encode_frame(header, [("context", ctx[:1000]),
                                                                   *(("ciphertexts", c) for c in cts),
                                                                   ("cutoff", cut)])}.items():
        r = _post(sworld, f"/v1/models/{mid}/score", body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "CIPHERTEXT_INVALID"), label
    r = _post(sworld, f"/v1/models/{mid}/score", b"x" * 10, content_type="text/plain")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "INVALID_REQUEST")
    huge = good + b"\x00" * sworld.parties.service.settings.max_body_bytes
    r = _post(sworld, f"/v1/models/{mid}/score", huge)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "INVALID_REQUEST")
    assert _usage(sworld, ag, mid) == (0, 0)
    entries = sworld.parties.regulator.audit(limit=1000, action="model.score")["entries"]
    assert len(entries) == len(invalid_request) + 4 and all(e["decision"] == "deny" for e in entries)
    # and the service still answers the good frame
    r = _post(sworld, f"/v1/models/{mid}/score", good)
    assert r.status_code == 200 and _usage(sworld, ag, mid) == (4, 0)


def test_an_idempotent_binary_request_is_answered_and_replayed_as_json(sworld, applicants, columns_keys):
    ag, mid = sworld.agreement["id"], sworld.model.id
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    frame = encode_frame({"layout": "columns", "agreement_id": ag},
                         [("context", _raw(columns_keys.public)),
                          *(("ciphertexts", _raw(c)) for c in he.encrypt_columns(columns_keys.context, x)),
                          ("cutoff", _raw(he.encrypt_cutoffs(columns_keys.context, np.zeros(2))))])
    headers = {"Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE, "Idempotency-Key": "bin-1",
               "Authorization": sworld.parties.bank._http.headers["Authorization"]}
    first = httpx.post(f"{sworld.parties.service.url}/v1/models/{mid}/score", content=frame, headers=headers,
                       timeout=120)
    again = httpx.post(f"{sworld.parties.service.url}/v1/models/{mid}/score", content=frame, headers=headers,
                       timeout=120)
    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"].startswith("application/json") and first.content == again.content
    assert _usage(sworld, ag, mid) == (4, 0)


@pytest.fixture(scope="module")
def applicants(city_data) -> list[dict]:
    import pyarrow.parquet as pq

    features = ["age", "industry", "district", "monthly_income", "social_insurance_months"]
    return pq.read_table(city_data.tax_income, columns=features).slice(0, 64).to_pylist()
