"""The demo's bank chapter, run against a real gateway with a model registered through the library."""

from __future__ import annotations

from veilbox import demo
from veilbox.demo_bank import APPLICANTS, chapter_bank


def test_bank_chapter_tells_what_the_bank_learned(parties, make_model):
    model = make_model("job_demo_model")
    ag = parties.agreement("icbc-wuxi", job_kinds=["verify", "score"],
                           quotas={"verify_per_subject_per_day": 3, "distinct_params_per_subject": 2})
    story = demo.Story(parties.service.admin, clients={"owner": parties.owner, "bank": parties.bank},
                       state={"agreement:bank": ag["id"], "model_id": model.id})
    chapter_bank(story)
    text = "\n".join(story.facts)
    assert "verification products" in text and "QUERY_REJECTED" in text
    assert "signed receipts" in text and "P9999999 answered a plain 'no'" in text
    assert "under the bank's BFV key" in text
    assert "stopped after 2 answers with QUOTA_EXCEEDED" in text
    assert f"decided {len(APPLICANTS)} applicants" in text and "10 of 32,768 decisions" in text
    assert "refused with POLICY_DENIED (score.logits_not_granted)" in text
    # what left is in the audit log as hashed subjects and digests only
    dump = str(parties.regulator.audit(limit=1000))
    assert "P0000001" not in dump and "P0000010" not in dump


def test_bank_chapter_without_a_model(parties):
    ag = parties.agreement("icbc-wuxi", job_kinds=["verify", "score"],
                           quotas={"verify_per_subject_per_day": 3, "distinct_params_per_subject": 2})
    story = demo.Story(parties.service.admin, clients={"owner": parties.owner, "bank": parties.bank},
                       state={"agreement:bank": ag["id"]})
    chapter_bank(story)
    assert any("no released model" in f for f in story.facts)
