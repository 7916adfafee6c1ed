"""The encrypted check's own audit entries over real HTTP (issue 12): an allowed batch leaves an entry of the same
shape and values — subject count, every canonical subject hash, consent and request digests — whether the batch's
subjects are in the dataset or not; only the digest of the output ciphertext differs."""

from __future__ import annotations

import json

import numpy as np

from mpc.he import client as he
from veilbox import bank as bank_sdk

#: what differs between any two requests (time, chain position) or names the register's own product/agreement
VARYING = {"seq", "ts", "hash", "prev_hash", "agreement_id", "dataset", "output_digest"}


def _head(world) -> int:
    entries = world.parties.regulator.audit(limit=1000)["entries"]
    return max((e["seq"] for e in entries), default=0)


def _own_entries(world, seq: int) -> list[dict]:
    """The bank's own entries after ``seq``, as the bank reads them."""
    out = [e for e in world.bank.audit(since=seq, limit=1000)["entries"]
           if e["seq"] > seq and e["action"] == "verify.check_encrypted"]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def test_an_allowed_encrypted_check_is_audited_alike_for_present_and_absent_subjects(people):
    """Neighbouring registers (with and without person 7), identical agreements, the same batches and ciphertexts:
    the allowed entries hold the same fields and values — subject hashes included — except the output digest
    (present on both) and the register's own product, agreement and dataset names (and the product's certificate
    under that agreement)."""
    world = people.world
    keys = bank_sdk.verification_keys()
    batches = [([7, 8], he.encrypt_thresholds(keys.context, np.array([5000, 1000]))),
               ([7], he.encrypt_thresholds(keys.context, np.array([6000]))),
               ([3, 7, 9], he.encrypt_thresholds(keys.context, np.array([2000, 7000, 100])))]

    def run(dataset: str) -> tuple[list[dict], list[list[bool]]]:
        ag = people.agreements[dataset]["id"]
        seq, signs = _head(world), []
        for subjects, ct in batches:
            r = world.bank.check_encrypted(f"{dataset}_income_at_least", ag, subjects, keys.public, ct,
                                           consent_ref="c")
            signs.append([bool(s) for s in he.read_signs(keys.context, r["ciphertext"])[:len(subjects)]])
        return _own_entries(world, seq), signs

    (present, p_signs), (absent, a_signs) = run("people_with"), run("people_without")
    assert p_signs == [[True, True], [True], [True, True, True]]
    assert a_signs == [[False, True], [False], [True, False, True]]  # only the verdict on person 7 differs
    assert len(present) == len(absent) == len(batches)
    for p, a, (subjects, _) in zip(present, absent, batches, strict=True):
        assert set(p) == set(a) and set(p["details"]) == set(a["details"])
        assert p["decision"] == a["decision"] == "allow" and p["code"] is a["code"] is None
        assert p["output_digest"] and a["output_digest"]
        assert {k: v for k, v in p.items() if k not in VARYING | {"details"}} == \
            {k: v for k, v in a.items() if k not in VARYING | {"details"}}
        # the product's certificate under each agreement names that register's own product and agreement
        pd, ad = ({k: v for k, v in d["details"].items() if k not in ("ms", "product", "certificate_id")}
                  for d in (p, a))
        assert pd == ad
        assert p["details"]["certificate_id"].startswith("VBX-PC-") and a["details"]["certificate_id"].startswith(
            "VBX-PC-")
        assert pd["subjects"] == len(subjects) and len(pd["subject_hashes"]) == len(subjects)
        assert p["details"]["product"] == "people_with_income_at_least"
        assert a["details"]["product"] == "people_without_income_at_least"
        assert (p["dataset"], a["dataset"]) == ("people_with", "people_without")
