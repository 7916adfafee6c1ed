"""Responses of the model registry and encrypted scoring (docs/api.md, "Models and scoring (HE)")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from gateway.contract import Out, example

_FP = "sha256:570867f620348ff939f388066824952621c08733e1b32ef4a4df88175ac0ae03"
MODEL_EXAMPLE: dict[str, Any] = {
    "id": "mdl_5b0c2e7a91d4", "algorithm": "logistic_regression", "purpose": "credit_risk",
    "certificate": {"id": "cert_0d1e6b", "valid_from": "2026-12-03T04:00:00+00:00",
                    "valid_until": "2027-12-03T04:00:00+00:00", "valid": True, "algorithm": "logistic_regression",
                    "purpose": "credit_risk"},
    "features": ["age", "monthly_income"], "card": {"input_width": 2, "dp": {"epsilon": 1.0, "delta": 1e-06}},
    "source_datasets": {"tax_income": {"fingerprint": _FP}}, "job_id": "job_4d0a8363b79e6b6afc64",
    "agreement_id": "agr_1b61737f85dc4169584d", "trained_by": "risk-lab",
    "output_digest": "sha256:8adfa72723aa8a1823fec0cdbf6ab12484601a14f9dbc368921e755b9348665a",
    "created_at": "2026-12-03T04:00:00+00:00",
    "scoring": {"encrypted": True, "outputs": ["decision", "logit"], "default_output": "decision",
                "layouts": ["row", "columns"], "max_decisions_per_agreement": 10000, "max_logits_per_agreement": 0},
}


class Certificate(Out):
    id: str
    valid_from: str
    valid_until: str
    valid: bool = Field(description="valid now")
    algorithm: str
    purpose: str


class Model(Out):
    """A released model's card and certificate (never the weights or where they are stored)."""

    model_config = ConfigDict(json_schema_extra=example(MODEL_EXAMPLE))
    id: str
    certificate: Certificate
    algorithm: str
    purpose: str
    features: list[str]
    card: dict[str, Any] = Field(description="the model card: encoding, DP guarantee, metrics, scoring limits")
    source_datasets: dict[str, dict[str, str]]
    job_id: str | None
    agreement_id: str | None
    trained_by: str
    output_digest: str
    created_at: str
    scoring: dict[str, Any] = Field(description="what encrypted scoring offers and how it is limited")


class ScoreAnswer(Out):
    model_config = ConfigDict(json_schema_extra=example({
        "ciphertexts": ["XqEAAAAAAAD…"], "layout": "columns", "output": "decision", "scores_counted": 2,
        "scores_used": 2, "scores_limit": 10000}))
    ciphertexts: list[str] = Field(description="base64 CKKS ciphertexts under the bank's key")
    layout: Literal["row", "columns"]
    output: Literal["decision", "logit"]
    scores_counted: int = Field(description="answers this request exposed (taken from the extraction quota)")
    scores_used: int
    scores_limit: int | None


_SOURCE = {"dataset": "tax_income", "owner": "city-tax-bureau", "fingerprint": _FP}
CERTIFICATE_EXAMPLE: dict[str, Any] = {
    "id": "VBX-OC-2026-5E0B91C2", "kind": "output", "subject": "job_9858613d95c768f45bb9",
    "agreement_id": "agr_1b61737f85dc4169584d", "issued_by": "city-tax-bureau", "holder": "risk-lab",
    "status": "valid", "valid": True, "valid_from": "2026-12-03T04:00:00+00:00",
    "valid_until": "2027-06-30T00:00:00+00:00", "revoked_at": None, "revoked_reason": None,
    "covers": {"job_id": "job_9858613d95c768f45bb9", "job_kind": "query", "output_kind": "aggregate",
               "output_digest": "sha256:8adfa72723aa8a1823fec0cdbf6ab12484601a14f9dbc368921e755b9348665a"},
    "source": [_SOURCE], "created_at": "2026-12-03T04:00:00+00:00",
}


class Source(Out):
    """Where an output's data came from (在成果中注明数据来源)."""

    dataset: str
    owner: str = Field(description="the data owner (unit) that supplied the dataset")
    fingerprint: str = Field(description="the dataset's fingerprint the product or job was bound to")


class RegistryCertificate(Out):
    """A verification product's or a released output's certificate, as the registry states it now."""

    model_config = ConfigDict(json_schema_extra=example(CERTIFICATE_EXAMPLE))
    id: str
    kind: Literal["product", "output"]
    subject: str = Field(description="the product's name or the released job's id")
    agreement_id: str | None = Field(description="the agreement an output was released under, or a product is "
                                                 "certified under (none for a product's own certificate)")
    issued_by: str = Field(description="the data owner who issued it")
    holder: str | None = Field(description="the grantee an output was released to, or a product is certified for")
    status: Literal["valid", "revoked", "expired"]
    valid: bool = Field(description="valid now")
    valid_from: str
    valid_until: str = Field(description="never beyond the agreement's valid_until for an output or a product "
                                         "under an agreement")
    revoked_at: str | None
    revoked_reason: str | None
    covers: dict[str, Any] = Field(description="what it certifies: the product's question, or the job, its "
                                               "kind and output digest")
    source: list[Source]
    created_at: str
