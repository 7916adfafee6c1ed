"""The demo's federated chapter runs end to end over the real gateway after the setup, catalog and agreements
chapters: five banks, one dropout, only noisy sums released, the card's ε within the plan.

The rounds get a generous stage deadline; the stage the dropout leaves waiting is closed by the operator through
the API (`stage_closer`), so no outcome depends on how fast the machine is."""

from __future__ import annotations

from typing import Any

from veilbox import demo
from veilbox.demo_federated import HOLDERS, chapter_federated


def test_federated_chapter_runs_on_the_demo_agreements(service: Any, city_data: Any, stage_closer: Any) -> None:
    story = demo.Story(service.admin)
    demo.chapter_setup(story)
    demo.chapter_catalog(story, city_data)
    demo.chapter_agreements(story)
    before = len(story.facts)
    with stage_closer(story.clients["operator"]):  # ends the stage the dropout leaves waiting
        chapter_federated(story, rows=4000, rounds=2, epsilon=2.0, stage_timeout_s=300.0)
    new = story.facts[before:]
    assert len(new) == 2, new
    assert "federated training: 5 banks kept their rows; 2 secure-aggregation rounds" in new[0]
    assert "survivors per round [5, 4]" in new[0]
    card = story.state["federated:card"]
    assert card["privacy"]["epsilon"] <= 2.0 + 1e-9 and card["holders"] == list(HOLDERS)
    assert "weights" in card and len(card["weights"]) == len(card["features"])
