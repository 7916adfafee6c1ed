"""The demo's PSI chapter runs against a real gateway and tells what happened without an error; then the
regulator's chapter verifies the chain. Once per cryptographic suite: `veilbox demo --suite sm` (SM3, SM2)."""

from __future__ import annotations

from tests.conftest import BOTH_SUITES
from veilbox import demo_psi
from veilbox.demo import Story, chapter_regulator


@BOTH_SUITES
def test_chapter_psi(psi_world, city_data, capsys, crypto_suite):
    parties = psi_world.parties
    story = Story(parties.service.admin, clients={"owner": parties.owner, "bank": parties.bank})
    demo_psi.chapter_psi(story, city_data)
    printed = capsys.readouterr().out
    assert "ERROR" not in printed
    facts = "\n".join(story.facts)
    assert "PSI: the bank learned" in facts and "anonymous verification" in facts
    assert "POLICY_DENIED" in facts  # psi_members is not granted in the chapter's agreement
    regulator = parties.service.principal("regulator", "regulator")
    story.clients["regulator"] = regulator
    chapter_regulator(story)  # raises unless the chain and every signature verify
    assert regulator.audit_public_key()["algorithm"] == {"intl": "ed25519", "sm": "sm2"}[crypto_suite]
    assert "audit chain ok=True" in "\n".join(story.facts)
