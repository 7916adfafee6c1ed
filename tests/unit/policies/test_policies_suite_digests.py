"""An ``sm`` home's job spec hash is SM3 (``sm3:``), and the owner's approval binds to it."""

from __future__ import annotations

from typing import Any

import policies
from cryptosuite import suite_of
from policies import Budget, JobState
from policies._canonical import canonical_json

SPEC = {"sql": "SELECT district, COUNT(*) FROM tax_income GROUP BY district", "epsilon": "0.1"}


def test_an_sm_home_binds_approval_to_the_sm3_spec_hash(world: Any) -> None:
    ag = world.active()
    job = policies.submit(
        world.engine,
        world.bank,
        ag.id,
        "query",
        SPEC,
        datasets=["tax_income"],
        columns={"tax_income": ["district"]},
        cost=Budget.parse("0.1", "1e-7"),
        now=world.now,
        hash_alg="sm3",
    )
    assert job.spec_hash == suite_of("sm").digest(canonical_json(SPEC).encode()) == policies.spec_hash(SPEC, "sm3")
    approved = policies.approve(world.engine, world.owner, job.id, spec_hash=job.spec_hash, now=world.now)
    assert approved.state is JobState.APPROVED


def test_an_sm_home_hashes_the_agreement_document_with_sm3(world: Any) -> None:
    doc = policies.AgreementDocument.model_validate(world.document())
    ag = policies.create_agreement(world.engine, world.owner, doc, now=world.now, hash_alg="sm3")
    assert ag.document_hash == doc.digest("sm3") == suite_of("sm").digest(doc.canonical_json().encode())
    assert ag.document_hash.startswith("sm3:") and doc.digest() == world.create().document_hash  # intl: sha256
    accepted = policies.accept(world.engine, world.bank, ag.id, document_hash=ag.document_hash, now=world.now)
    assert accepted.document_hash == ag.document_hash
