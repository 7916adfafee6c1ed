"""Responses of the verification products and checks (docs/api.md, "Verifications", 核验), plain, encrypted and
anonymous (their models live with the PSI routes: `gateway.routes.psi`)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from gateway.contract import Out, example

_RECEIPT = "vbr1.eyJhZ3JlZW1lbnRfaWQiOiJhZ3JfMWI2MTczN2Y4NWRjNDE2OTU4NGQiLCJraW5kIjoidmVyaWZpY2F0aW9uIn0.MEUCIQ…"
PRODUCT_EXAMPLE: dict[str, Any] = {
    "name": "income_at_least", "owner": "city-tax-bureau", "dataset": "tax_income", "subject_column": "person_id",
    "predicate": "monthly_income >= :threshold", "params": {"threshold": "number"},
    "description": "monthly income at least the threshold", "hide_membership": False,
    "created_at": "2026-12-03T03:40:00+00:00", "certificate_id": "VBX-PC-2026-0A4C7E19",
    "canonical_predicate": "\"monthly_income\" >= $p_threshold",
    "columns": ["monthly_income"],
    "encrypted_form": {"column": "monthly_income", "op": ">=", "param": "threshold", "threshold_bounds": [0, 200000],
                       "bank_encrypts": "t"},
}


class EncryptedForm(Out):
    column: str
    op: str = Field(description=">= or <=")
    param: str
    threshold_bounds: list[int]
    bank_encrypts: str = Field(description="t (>=) or -t (<=)")


class Product(Out):
    """A verification product: its question (predicate template and parameter types), never any answer.
    ``available: false`` (and no vetted fields) when its dataset's declaration no longer admits it."""

    model_config = ConfigDict(json_schema_extra=example(PRODUCT_EXAMPLE))
    name: str
    owner: str
    dataset: str
    subject_column: str
    predicate: str
    params: dict[str, str]
    description: str
    hide_membership: bool
    created_at: str
    canonical_predicate: str | None = None
    columns: list[str] | None = None
    encrypted_form: EncryptedForm | None = None
    available: bool | None = None
    certificate_id: str | None = Field(None, description="the product's certificate (GET /certificates/{id})")


class CheckAnswer(Out):
    model_config = ConfigDict(json_schema_extra=example({"result": True, "receipt": _RECEIPT,
                                                         "certificate_id": "VBX-PC-2026-5C1D07A2"}))
    result: bool = Field(description="the answer (an unknown subject answers false)")
    receipt: str = Field(description="signed statement of what was answered (vbr1.<payload>.<signature>)")
    certificate_id: str = Field(description="the product's certificate under the agreement (VBX-PC-…), issued by "
                                            "the first check under it; the receipt signs it too")


class EncryptedCheckAnswer(Out):
    model_config = ConfigDict(json_schema_extra=example({"ciphertext": "XqEAAAAAAAD…", "receipt": _RECEIPT,
                                                         "certificate_id": "VBX-PC-2026-5C1D07A2"}))
    ciphertext: str = Field(description="base64 BFV Enc(r·(x − t) + r'): per slot, positive exactly when the "
                                        "subject passes")
    receipt: str
    certificate_id: str = Field(description="the product's certificate under the agreement (VBX-PC-…)")
