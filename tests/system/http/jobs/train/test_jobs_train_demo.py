"""The demo's models chapter runs end to end over the real gateway after the setup, catalog and agreements
chapters, and hands the registered model's id to later chapters when the registry exists."""

from __future__ import annotations

from veilbox import demo
from veilbox.demo_models import chapter_models


def test_models_chapter_runs_on_the_demo_agreements(service, city_data):
    story = demo.Story(service.admin)
    demo.chapter_setup(story)
    demo.chapter_catalog(story, city_data)
    demo.chapter_agreements(story)
    before = len(story.facts)
    chapter_models(story)
    new = story.facts[before:]
    assert len(new) == 2, new
    assert story.state.get("model_id") and "DP credit-default model" in new[0], new
    assert "custom" in new[1]
    ag = story.state["agreement:operator"]
    jobs = story.clients["operator"].jobs()
    assert {j["kind"] for j in jobs if j["agreement_id"] == ag} == {"train", "code"}
