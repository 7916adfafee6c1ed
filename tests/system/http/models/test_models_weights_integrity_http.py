"""Model weights verified at read over real HTTP: scoring checks the stored weights against the digest in the card
on every call, so weights with one flipped byte, or gone, refuse scoring with ``UNAVAILABLE`` (reason
``storage.fingerprint_mismatch`` / ``storage.missing``) even after the model was loaded once, meter nothing, and
``storage.integrity`` is audited for the data's owner; the restored weights score again."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from catalog import models
from veilbox import bank as bank_sdk
from veilbox.client import ApiError

FEATURES = ["age", "industry", "district", "monthly_income", "social_insurance_months"]


def test_altered_or_missing_weights_refuse_scoring_audited_and_unmetered(sworld, city_data, columns_keys):
    m = sworld.model
    applicants = pq.read_table(city_data.tax_income, columns=FEATURES).slice(0, 4).to_pylist()
    x = bank_sdk.encode_applicants(m.card, applicants)
    s = sworld.logits(x)
    t = s - 5.0

    def decide():
        return bank_sdk.decide_applicants(sworld.bank, m.id, x, t, layout="columns", keys=columns_keys,
                                          agreement_id=sworld.agreement["id"])

    assert decide().decisions.all()  # loaded (and kept in memory) once
    engine = sworld.parties.service.ctx.engine
    used = models.score_usage(engine, sworld.agreement["id"], m.id, "decision")
    path = sworld.parties.service.settings.models_dir / m.weights_path
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    try:
        for damage, reason in ((lambda: path.write_bytes(bytes(flipped)), "storage.fingerprint_mismatch"),
                               (path.unlink, "storage.missing")):
            damage()
            with pytest.raises(ApiError) as e:
                decide()
            assert (e.value.code, e.value.status) == ("UNAVAILABLE", 503)
            assert e.value.details == [{"reason": reason}]
    finally:
        path.write_bytes(original)
    assert models.score_usage(engine, sworld.agreement["id"], m.id, "decision") == used  # nothing metered
    entries = sworld.parties.owner.audit(action="storage.integrity")["entries"]
    assert [(e["dataset"], e["role"]) for e in entries] == [("tax_income", "system")] * 2
    details = [e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]) for e in entries]
    assert details == [{"key": f"models/{m.weights_path}", "model_id": m.id, "reason": r}
                       for r in ("storage.fingerprint_mismatch", "storage.missing")]
    assert entries[0]["output_digest"] == m.card["weights"]["sha256"]
    assert sworld.bank.audit(action="storage.integrity")["entries"] == []  # the caller sees its refused call only
    assert decide().decisions.all()  # the restored weights score again
