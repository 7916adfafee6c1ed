"""Response models of the consent registry (同意登记, ``/v1/consents``)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from gateway.contract import Out, example

CONSENT_EXAMPLE: dict[str, Any] = {
    "id": "cns_0123456789abcdef",
    "owner": "tax-bureau",
    "subject_hash": "hs:0123456789abcdef0123456789abcdef",
    "grantee": "bank",
    "scenario": "income verification for a consumer loan application",
    "products": ["income_at_least"],
    "valid_from": "2026-12-03T10:00:00+00:00",
    "valid_until": "2027-03-03T10:00:00+00:00",
    "recorded_by": "tax-bureau",
    "created_at": "2026-12-03T10:00:00+00:00",
    "revoked_at": None,
    "revoked_by": None,
    "revoke_reason": None,
    "state": "valid",
}


class Consent(Out):
    """A recorded consent: one subject (as its keyed hash), one grantee, one scenario, the products it covers
    and its validity window; ``state`` is valid, pending, expired or revoked."""

    model_config = ConfigDict(json_schema_extra=example(CONSENT_EXAMPLE))
    id: str
    owner: str
    subject_hash: str
    grantee: str
    scenario: str
    products: list[str]
    valid_from: str
    valid_until: str
    recorded_by: str
    created_at: str
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None
    state: str


class SubjectUse(Out):
    """One use of the subject's data the audit log records: what, when, by whom, the outcome (never a value)."""

    seq: int
    ts: str
    actor: str
    role: str
    action: str
    agreement_id: str | None
    dataset: str | None
    decision: str
    code: str | None
    product: str | None
    consent_ids: list[str] | dict[str, Any] | None


SUBJECT_ACCESS_EXAMPLE: dict[str, Any] = {
    "subject_hash": "hs:0123456789abcdef0123456789abcdef",
    "consents": [CONSENT_EXAMPLE],
    "uses": [
        {
            "seq": 412,
            "ts": "2026-12-04T09:30:00+00:00",
            "actor": "bank",
            "role": "bank",
            "action": "verification.check",
            "agreement_id": "agr_0123456789abcdef",
            "dataset": "tax_income",
            "decision": "allow",
            "code": None,
            "product": "income_at_least",
            "consent_ids": ["cns_0123456789abcdef"],
        }
    ],
}


class SubjectAccess(Out):
    """The subject-access report: the person's consents with this owner and every recorded use of their data."""

    model_config = ConfigDict(json_schema_extra=example(SUBJECT_ACCESS_EXAMPLE))

    subject_hash: str
    consents: list[Consent]
    uses: list[SubjectUse]
