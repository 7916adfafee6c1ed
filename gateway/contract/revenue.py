"""Response models of multi-owner signing and revenue statements (收益分成, docs/revenue.md)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from gateway.contract import Out, example

HASH_EXAMPLE = "sha256:ecc1841d66a0a8306b606200a00a6d2ce16c39be93e09bb5bd647fc58caede3c"
CSV = {"text/csv": {"schema": {"type": "string"}}}


class AgreementSignature(Out):
    """A co-owner's signature of its part of one version of a multi-owner agreement."""

    model_config = ConfigDict(json_schema_extra=example({
        "owner": "hr-bureau", "version": 1, "document_hash": HASH_EXAMPLE, "datasets": ["social_insurance"],
        "signed_at": "2026-12-03T03:49:12.008112+00:00", "current": True}))
    owner: str
    version: int
    document_hash: str = Field(description="the hash signed; the signature counts only while it is current")
    datasets: list[str] = Field(description="the co-owner's datasets in the agreement (its part)")
    signed_at: str
    current: bool = Field(description="signed on the agreement's current document hash")


class StatementUsage(Out):
    calls: int
    jobs: int
    epsilon: str = Field(description="ε drawn, net of refunds, exact")
    scores: int
    checks: int


class StatementLine(Out):
    line: str = Field(description="calls | jobs | epsilon | scores | checks")
    quantity: int | str
    exact: str = Field(description="price × quantity, exact")
    amount: str = Field(description="the line's cents, allocated so the lines sum to the total")


class StatementTotal(Out):
    amount: str = Field(description="the exact total rounded once to the cent, half up")
    exact: str


class StatementOwner(Out):
    owner: str
    datasets: list[str]
    weight: str = Field(description="the owner's share (exact) by the agreement's split")
    amount: str = Field(description="largest-remainder allocation of the total's cents (docs/revenue.md)")


STATEMENT_EXAMPLE = {
    "agreement_id": "agr_1b61737f85dc4169584d", "title": "SME credit model", "grantee": "icbc-wuxi",
    "month": "2026-12", "currency": "CNY", "category": "commercial", "split": "shares",
    "usage": {"calls": 7, "jobs": 0, "epsilon": "0", "scores": 0, "checks": 0},
    "lines": [{"line": "calls", "quantity": 7, "exact": "0.7", "amount": "0.70"},
              {"line": "jobs", "quantity": 0, "exact": "0", "amount": "0.00"},
              {"line": "epsilon", "quantity": "0", "exact": "0", "amount": "0.00"},
              {"line": "scores", "quantity": 0, "exact": "0", "amount": "0.00"},
              {"line": "checks", "quantity": 0, "exact": "0", "amount": "0.00"}],
    "total": {"amount": "0.70", "exact": "0.7"},
    "owners": [{"owner": "hr-bureau", "datasets": ["social_insurance"], "weight": "1/4", "amount": "0.18"},
               {"owner": "tax-bureau", "datasets": ["tax_income"], "weight": "3/4", "amount": "0.52"}],
}


class Statement(Out):
    """One agreement's monthly statement: usage from the meters, charges per line, each owner's part."""

    model_config = ConfigDict(json_schema_extra=example(STATEMENT_EXAMPLE))
    agreement_id: str
    title: str
    grantee: str
    month: str
    currency: str | None
    category: str = Field(description="commercial | public_welfare (charges zero, usage still stated)")
    split: str = Field(description="shares | rows | epsilon")
    usage: StatementUsage
    lines: list[StatementLine]
    total: StatementTotal
    owners: list[StatementOwner]


class OwnerStatementEntry(Out):
    agreement_id: str
    title: str
    grantee: str
    currency: str | None
    category: str
    split: str
    usage: StatementUsage
    agreement_total: str
    weight: str
    amount: str


class OwnerTotal(Out):
    currency: str = Field(description="ISO 4217, or '-' for agreements without prices")
    amount: str


class OwnerStatement(Out):
    """An owner's monthly statement: its part of every agreement that lists its datasets."""

    model_config = ConfigDict(json_schema_extra=example({
        "owner": "hr-bureau", "month": "2026-12",
        "agreements": [{"agreement_id": "agr_1b61737f85dc4169584d", "title": "SME credit model",
                        "grantee": "icbc-wuxi", "currency": "CNY", "category": "commercial", "split": "shares",
                        "usage": STATEMENT_EXAMPLE["usage"], "agreement_total": "0.70", "weight": "1/4",
                        "amount": "0.18"}],
        "totals": [{"currency": "CNY", "amount": "0.18"}]}))
    owner: str
    month: str
    agreements: list[OwnerStatementEntry]
    totals: list[OwnerTotal]
