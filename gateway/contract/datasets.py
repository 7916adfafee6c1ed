"""Responses of the catalog routes (docs/api.md, "Datasets (catalog)")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from catalog.columns import Grade, Kind, Role
from gateway.contract import Open, Out, example

Scalar = str | int | float | bool


class Column(Out):
    role: Role
    kind: Kind
    domain: list[Scalar] | None = Field(None, description="the declared values (dimensions)")
    bounds: list[int | float] | None = Field(None, description="[low, high] declared bounds (values are clamped)")
    description: str | None = None
    sensitive: bool | None = Field(None, description="flagged sensitive (敏感) by the owner: a group key on it needs "
                                                     "its grade's group size (GET /v1/policy/grades); absent when not")


class IngestReport(Open):
    """What the ingest did to the source (the owner only): rows kept, ids dropped, values clamped."""

    rows: int
    dropped_null_ids: int
    clamped: dict[str, int]
    out_of_domain: dict[str, int]
    nulls: dict[str, int]
    source_fingerprint: str | None = None


DATASET_EXAMPLE: dict[str, Any] = {
    "name": "tax_income", "owner": "city-tax-bureau",
    "description": "Individual income tax and social insurance, one row per person (synthetic).",
    "grade": "important", "personal": True, "sensitive": False,
    "fingerprint": "sha256:570867f620348ff939f388066824952621c08733e1b32ef4a4df88175ac0ae03",
    "max_rows_per_unit": 1,
    "columns": {"person_id": {"role": "id", "kind": "string"},
                "district": {"role": "dimension", "kind": "string", "domain": ["Liangxi", "Xinwu", "Binhu"]},
                "monthly_income": {"role": "measure", "kind": "float", "bounds": [0, 200000]}},
    "rows": 5000, "created_at": "2026-12-03T03:38:46.425570",
    "ingest": {"rows": 5000, "dropped_null_ids": 0, "clamped": {}, "out_of_domain": {}, "nulls": {},
               "source_fingerprint": "sha256:570867f620348ff939f388066824952621c08733e1b32ef4a4df88175ac0ae03"},
}


class Dataset(Out):
    """A registered dataset as the caller may see it: exact row counts and the ingest report for its owner only."""

    model_config = ConfigDict(json_schema_extra=example(DATASET_EXAMPLE))
    name: str
    owner: str
    description: str
    grade: Grade = Field(description="classification grade (数据分级)")
    personal: bool
    sensitive: bool
    fingerprint: str = Field(description="digest of the registered version")
    max_rows_per_unit: int | None
    columns: dict[str, Column]
    rows: int | None = Field(description="the owner only; null for everyone else")
    created_at: str
    ingest: IngestReport | None = Field(None, description="the owner only (absent for everyone else)")
    state: Literal["registered", "withdrawn"] = Field("registered", description="withdrawn: its owner withdrew it "
                                                      "(nothing new runs on it; its copy is disposed of after the "
                                                      "grace period, the record is kept)")


class Withdrawal(Out):
    """What a withdrawal did, in the transaction that recorded it (docs/agreements.md, "Exit and withdrawal")."""

    model_config = ConfigDict(json_schema_extra=example({
        "dataset": "tax_income", "state": "withdrawn", "withdrawn_at": "2026-12-03T10:00:00+00:00",
        "dispose_after": "2026-12-10T10:00:00+00:00", "agreements_suspended": ["ag_3f2a…"],
        "jobs_cancelled": ["job_81c0…"], "jobs_refunded": ["job_81c0…"]}))
    dataset: str
    state: Literal["withdrawn"]
    withdrawn_at: str
    dispose_after: str = Field(description="from then on the job worker destroys its data key and deletes its copy")
    agreements_suspended: list[str] = Field(description="active agreements naming it, now suspended")
    jobs_cancelled: list[str] = Field(description="its pending and approved jobs, now cancelled")
    jobs_refunded: list[str] = Field(description="the cancelled jobs whose charge was refunded")


class MockTable(Out):
    """Synthetic rows drawn from the declaration only (no real value)."""

    model_config = ConfigDict(json_schema_extra=example({
        "dataset": "tax_income", "mock": True, "seed": 1, "columns": ["person_id", "district", "monthly_income"],
        "rows": [["M0000001", "Binhu", 8120.5], ["M0000002", "Xinwu", 15002.0]]}))
    dataset: str
    mock: Literal[True]
    seed: int
    columns: list[str]
    rows: list[list[Any]]
