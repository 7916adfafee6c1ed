"""The demo's PSI chapter runs against a real gateway and tells what happened without an error."""

from __future__ import annotations

from veilbox import demo_psi
from veilbox.demo import Story


def test_chapter_psi(psi_world, city_data, capsys):
    parties = psi_world.parties
    story = Story(parties.service.admin, clients={"owner": parties.owner, "bank": parties.bank})
    demo_psi.chapter_psi(story, city_data)
    printed = capsys.readouterr().out
    assert "ERROR" not in printed
    facts = "\n".join(story.facts)
    assert "PSI: the bank learned" in facts and "anonymous verification" in facts
    assert "POLICY_DENIED" in facts  # psi_members is not granted in the chapter's agreement
