"""Fingerprints verified at read over real HTTP: a registered copy with one flipped byte is never read — the query
fails before any read (refunded), with reason ``storage.fingerprint_mismatch``, and ``storage.integrity`` is
audited for the owner; the restored copy answers again."""

from __future__ import annotations

import json
from fractions import Fraction

from catalog import registry

SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def test_a_copy_with_a_flipped_byte_fails_closed_refunded_and_audited(parties):
    ag = parties.agreement()
    ds = registry.get(parties.service.ctx.engine, "tax_income")
    assert ds is not None and ds.key == ds.path.name  # the row names a key, not a location
    original = ds.path.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    ds.path.write_bytes(bytes(flipped))
    try:
        job = parties.operator.submit_job(ag["id"], "query", {"sql": SQL, "epsilon": "0.5"})
        done = parties.operator.wait_job(job["id"], timeout=120)
        assert done["state"] == "failed" and done["failure_reason"] == "storage.fingerprint_mismatch"
        spent = Fraction(parties.operator.budget(ag["id"])["exact"]["epsilon_spent"])
        assert spent == 0  # nothing was read: refunded
        [entry] = parties.owner.audit(action="storage.integrity")["entries"]
        details = entry["details"] if isinstance(entry["details"], dict) else json.loads(entry["details"])
        assert entry["dataset"] == "tax_income" and entry["role"] == "system"
        assert details == {"key": ds.key, "reason": "storage.fingerprint_mismatch"}
        assert parties.operator.audit(action="storage.integrity")["entries"] == []  # the grantee sees the failure only
    finally:
        ds.path.write_bytes(original)
    again = parties.operator.submit_job(ag["id"], "query", {"sql": SQL, "epsilon": "0.5"})
    assert parties.operator.wait_job(again["id"], timeout=120)["state"] == "released"
