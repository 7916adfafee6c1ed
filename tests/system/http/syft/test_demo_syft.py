"""The demo's PySyft chapter runs end to end over the real gateway after the setup, catalog and agreements
chapters: syft-rds sees the mock, the job becomes a code job under the operator's agreement, and the
owner-released result comes back through syft. Skipped only where the ``syft`` extra is absent."""

from __future__ import annotations

import pytest

pytest.importorskip("syft_rds")

from veilbox import demo
from veilbox.demo_syft import chapter_syft


def test_syft_chapter_runs_on_the_demo_agreements(service, city_data):
    story = demo.Story(service.admin)
    demo.chapter_setup(story)
    demo.chapter_catalog(story, city_data)
    demo.chapter_agreements(story)
    before = len(story.facts)
    chapter_syft(story)
    [fact] = story.facts[before:]
    assert "PySyft" in fact and "tax_income" in fact and fact.endswith("(done)"), fact
    ag = story.state["agreement:operator"]
    [job] = [j for j in story.clients["operator"].jobs() if j["agreement_id"] == ag]
    assert job["kind"] == "code" and job["state"] == "released"
