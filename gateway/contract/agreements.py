"""Responses of the agreement routes (docs/api.md, "Agreements" and "Usage and budget")."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from gateway.contract import Open, Out, example

AGREEMENT_EXAMPLE: dict[str, Any] = {
    "id": "agr_1b61737f85dc4169584d", "state": "active", "version": 1,
    "document_hash": "sha256:ecc1841d66a0a8306b606200a00a6d2ce16c39be93e09bb5bd647fc58caede3c",
    "owner": "city-tax-bureau", "title": "SME credit model", "grantee": "risk-lab", "datasets": ["tax_income"],
    "columns": {"tax_income": ["age", "district", "monthly_income"]}, "purposes": ["credit_risk"],
    "job_kinds": ["query", "train"], "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
    "budget": {"epsilon": "5", "delta": "0.000001"}, "min_group_units": 20,
    "quotas": {"calls_per_day": 10000, "verify_per_subject_per_day": 3, "jobs_per_day": 100, "scores_per_day": 10000,
               "distinct_params_per_subject": 3, "distinct_params_window_days": 30},
    "approval": "owner_each_job", "exit": {"on_expiry": "seal_outputs"},
    "price": {"per_call": "0.01", "per_job": "1", "per_epsilon": "2.5", "currency": "CNY"},
    "created_at": "2026-12-03T03:45:12.211541+00:00", "accepted_at": "2026-12-03T03:45:12.321243+00:00",
    "suspended_at": None, "revoked_at": None, "outputs_sealed": False,
    "filing_required": True, "filing_number": "BA-2026-000123", "filed_at": "2026-12-03T03:50:02.118305+00:00",
    "suspended_by": None,
}


class Agreement(Open):
    """An agreement (授权运营协议): its state and version, then its document's fields (``holders``,
    ``score_logits``, ``score_layout`` and ``anon_min_bucket`` appear only when the document sets them)."""

    model_config = ConfigDict(json_schema_extra=example(AGREEMENT_EXAMPLE))
    id: str
    state: str = Field(description="effective state: proposed | accepted | under_review | returned | filed | active "
                                   "| suspended | revoked | expired (docs/agreements.md)")
    version: int
    document_hash: str = Field(description="what an acceptance is bound to")
    owner: str
    title: str
    grantee: str
    datasets: list[str]
    columns: dict[str, list[str]]
    purposes: list[str]
    job_kinds: list[str]
    valid_from: str
    valid_until: str
    budget: dict[str, Any] = Field(description="total (ε, δ) as exact text")
    min_group_units: int
    quotas: dict[str, Any]
    approval: str
    exit: dict[str, Any]
    price: dict[str, Any] | None
    created_at: str | None
    accepted_at: str | None
    suspended_at: str | None
    revoked_at: str | None
    outputs_sealed: bool = Field(description="released outputs are sealed (after revocation or expiry)")
    filing_required: bool = Field(description="acceptance leads to review and filing (备案) before activation")
    filing_number: str | None = Field(description="the filing number (备案号), once filed: BA-<year>-<six digits>")
    filed_at: str | None
    suspended_by: str | None = Field(description="owner | authority while suspended (only they resume)")
    reviewers: dict[str, str] = Field(default_factory=dict,
                                      description="the named reviewers whose approval filing needs: name → kind "
                                                  "(expert_committee | cyberspace)")


class SignOff(Out):
    """One sign-off of a filing review: who, approve or refuse, why, and the document hash reviewed."""

    model_config = ConfigDict(json_schema_extra=example({
        "agreement_id": "agr_1b61737f85dc4169584d", "version": 1,
        "document_hash": "sha256:ecc1841d66a0a8306b606200a00a6d2ce16c39be93e09bb5bd647fc58caede3c",
        "reviewer": "data-bureau", "role": "authority", "verdict": "refuse",
        "reasons": ["the purpose does not name the lending product"], "at": "2026-12-03T03:49:12.008112+00:00"}))
    agreement_id: str
    version: int
    document_hash: str
    reviewer: str
    role: str
    verdict: str = Field(description="approve | refuse")
    reasons: list[str]
    at: str
    reviewer_kind: str | None = Field(None, description="a named reviewer's kind: expert_committee | cyberspace")


ORDER_EXAMPLE: dict[str, Any] = {
    "id": "ord_5f0c1d2e3a4b5c6d", "agreement_id": "agr_1b61737f85dc4169584d",
    "text": "Publish the consent notice for the verification product", "deadline": "2027-01-15T00:00:00+00:00",
    "opened_by": "data-bureau", "opened_at": "2026-12-03T03:52:40.512214+00:00", "open": True, "closed_by": None,
    "closed_at": None, "closing_note": None,
}


class RectificationOrder(Out):
    """A rectification order (整改): listed on every refusal under the agreement until the authority closes it."""

    model_config = ConfigDict(json_schema_extra=example(ORDER_EXAMPLE))
    id: str
    agreement_id: str
    text: str
    deadline: str
    opened_by: str
    opened_at: str
    open: bool
    closed_by: str | None
    closed_at: str | None
    closing_note: str | None


class PrincipalStatus(Out):
    """A principal as the data authority sees it after disabling or enabling it."""

    model_config = ConfigDict(json_schema_extra=example({"name": "risk-lab", "role": "bank", "disabled": True}))
    name: str
    role: str
    disabled: bool


class Pair(Out):
    epsilon: str
    delta: str


class BudgetAccount(Out):
    spent: Pair
    remaining: Pair


class Budget(Out):
    """Total and spent (ε, δ): numbers for display, exact text under ``exact``, and each dataset's account."""

    model_config = ConfigDict(json_schema_extra=example({
        "epsilon_total": 5.0, "epsilon_spent": 1.5, "delta_total": 1e-06, "delta_spent": 0.0,
        "exact": {"epsilon_total": "5", "epsilon_spent": "3/2", "delta_total": "0.000001", "delta_spent": "0"},
        "datasets": {"tax_income": {"spent": {"epsilon": "3/2", "delta": "0"},
                                    "remaining": {"epsilon": "7/2", "delta": "0.000001"}}}}))
    epsilon_total: float
    epsilon_spent: float
    delta_total: float
    delta_spent: float
    exact: dict[str, str]
    datasets: dict[str, BudgetAccount]


class UsageCounts(Out):
    calls: int
    jobs: int
    verifications: int
    scores: int
    epsilon: str


class UsageDay(UsageCounts):
    day: str


class Bill(Out):
    amount: str = Field(description="rounded to the cent")
    exact: str
    currency: str | None


class Usage(Out):
    model_config = ConfigDict(json_schema_extra=example({
        "agreement_id": "agr_1b61737f85dc4169584d", "since": "2026-12-01", "until": "2026-12-31",
        "days": [{"day": "2026-12-03", "calls": 3, "jobs": 2, "verifications": 0, "scores": 0, "epsilon": "0.75"}],
        "totals": {"calls": 3, "jobs": 2, "verifications": 0, "scores": 0, "epsilon": "0.75"},
        "billable": {"amount": "3.91", "exact": "3.905", "currency": "CNY"}}))
    agreement_id: str
    since: str
    until: str
    days: list[UsageDay]
    totals: UsageCounts
    billable: Bill | None = Field(None, description="only when the agreement carries a price schedule")


NEGATIVE_EXAMPLE: dict[str, Any] = {"id": "neg_9dd06e797e167181", "kind": "column", "value": "tax_income.id_number",
                                    "note": "national id numbers never leave", "created_by": "admin",
                                    "created_at": "2026-12-03T03:45:16.983855+00:00"}


class NegativeEntry(Out):
    """What no agreement can grant (负面清单)."""

    model_config = ConfigDict(json_schema_extra=example(NEGATIVE_EXAMPLE))
    id: str
    kind: str = Field(description="dataset | column | purpose")
    value: str
    note: str
    created_by: str
    created_at: str


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references replaced by the definitions (a self-contained request schema)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk({**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out


def document_body() -> dict[str, Any]:
    """``openapi_extra`` of the routes that take an agreement document: its schema (`AgreementDocument`, which
    the policies package validates, answering ``INVALID_REQUEST`` with every problem)."""
    from policies.agreements.document import AgreementDocument

    schema = _inline(AgreementDocument.model_json_schema())
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}
