"""Response models of complaints and objections (投诉与异议, ``/v1/complaints``)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from gateway.contract import Out, example

COMPLAINT_EXAMPLE: dict[str, Any] = {
    "id": "cmp_0123456789abcdef",
    "kind": "objection",
    "target_kind": "subject",
    "target": "hs:0123456789abcdef0123456789abcdef",
    "agreement_id": None,
    "subject_hash": "hs:0123456789abcdef0123456789abcdef",
    "owner": "tax-bureau",
    "filer": "tax-bureau",
    "filer_role": "owner",
    "on_behalf": True,
    "text": "the person objects to credit checks",
    "state": "open",
    "deadline": "2026-12-18T10:00:00+00:00",
    "created_at": "2026-12-03T10:00:00+00:00",
    "updated_at": "2026-12-03T10:00:00+00:00",
    "suspends_subject": True,
    "history": [
        {"state": "open", "by": "tax-bureau", "role": "owner", "reasons": [], "at": "2026-12-03T10:00:00+00:00"}
    ],
}


class Complaint(Out):
    """A complaint or objection: its target (a subject only as its keyed hash), the owner it is routed to, its
    state, deadline and history of moves with their reasons; ``suspends_subject`` while an owner's objection on a
    person's behalf holds that subject's checks."""

    model_config = ConfigDict(json_schema_extra=example(COMPLAINT_EXAMPLE))
    id: str
    kind: str
    target_kind: str
    target: str
    agreement_id: str | None
    subject_hash: str | None
    owner: str
    filer: str
    filer_role: str
    on_behalf: bool
    text: str
    state: str
    deadline: str
    created_at: str
    updated_at: str
    suspends_subject: bool
    history: list[dict[str, Any]]
