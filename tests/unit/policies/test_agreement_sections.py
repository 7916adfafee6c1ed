"""The agreement document's contractual sections: documents written before them keep their hash, the sections
validate and normalise, filing requires them, and the template names every field and validates."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from catalog.errors import DomainError
from policies.agreements.document import AgreementDocument, parse_document
from policies.agreements.sections import FILING_SECTIONS, missing_for_filing, require_complete
from policies.agreements.template import example_document, field_paths

MINIMAL: dict[str, Any] = {
    "title": "t", "grantee": "g", "datasets": ["a"], "columns": {"a": ["x"]}, "job_kinds": ["query"],
    "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z", "budget": {"epsilon": 1},
}
OLDER_FIELDS: dict[str, Any] = {
    **MINIMAL, "holders": ["h1"], "purposes": ["credit_risk"], "price": {"per_call": "0.01", "currency": "CNY"},
    "score_logits": True, "anon_min_bucket": 50, "exit": {"on_expiry": "keep_outputs"},
    "approval": "auto_within_budget",
}


def _complete() -> dict[str, Any]:
    return example_document(owner="o", grantee="g", columns={"a": ["x"]}, today=dt.date(2026, 1, 1))


def test_documents_written_before_the_sections_keep_their_hash() -> None:
    # digests of these documents as stored before the contractual sections existed
    assert AgreementDocument.model_validate(MINIMAL).digest() == (
        "sha256:9d24bf3e8d7ed3cb6d658aa8b94568864756fc9f8636f76e04720ba98d863610")
    assert AgreementDocument.model_validate(OLDER_FIELDS).digest() == (
        "sha256:5404c970d462d2a15fe46f2f562e8848938809b1210125ea43822b10dcc0bf8f")
    explicit = {**MINIMAL, "document_version": 1, "conditions": [], "exit_cases": [], "responsibilities": None}
    assert AgreementDocument.model_validate(explicit).canonical_json() == (
        AgreementDocument.model_validate(MINIMAL).canonical_json())


def test_sections_are_hashed_validated_and_required_for_filing() -> None:
    full = _complete()
    sections = {k: full[k] for k in ("document_version", *FILING_SECTIONS)}
    doc = AgreementDocument.model_validate({**MINIMAL, **sections})
    assert set(sections) <= set(doc.as_json())
    assert doc.digest() != AgreementDocument.model_validate(MINIMAL).digest()
    assert missing_for_filing(doc) == []
    require_complete(doc)
    # the conditions read in order; feedback recipients are a set
    swapped = {**sections, "conditions": list(reversed(sections["conditions"])),
               "feedback": {**sections["feedback"], "report_to": ["owner", "authority"]}}
    other = AgreementDocument.model_validate({**MINIMAL, **swapped})
    assert other.feedback == doc.feedback and other.digest() != doc.digest()

    bad = [("conditions", ["same", "same"]), ("exit_cases", ["  "]), ("document_version", 3),
           ("responsibilities", {"owner": full["responsibilities"]["owner"]}),
           ("derived", {"derived_data": "nobody", "models": "owner"}),
           ("feedback", {**full["feedback"], "every_days": 0})]
    for key, value in bad:
        with pytest.raises(DomainError) as e:
            parse_document({**MINIMAL, key: value})
        assert e.value.code == "INVALID_REQUEST" and all(d["at"].startswith(key) for d in e.value.details), key

    minimal = AgreementDocument.model_validate(MINIMAL)
    with pytest.raises(DomainError) as e:
        require_complete(minimal)
    assert e.value.code == "INVALID_REQUEST"
    assert [(d["reason"], d["at"]) for d in e.value.details] == [("document.incomplete", s) for s in FILING_SECTIONS]


def test_the_template_names_every_field_and_validates() -> None:
    full = _complete()

    def present(path: str) -> bool:
        node: Any = full
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    assert [p for p in field_paths() if not present(p)] == []
    assert AgreementDocument.model_validate(full).model_dump(mode="json") == full
