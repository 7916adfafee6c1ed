"""Catalog: register, list, show, mock, withdraw (docs/api.md, "Datasets (catalog)").

``POST /datasets/{name}/withdraw`` (the owner or an admin; anyone else ``NOT_FOUND_OR_FORBIDDEN``): see
`gateway.services.datasets.withdraw`.

``POST /datasets`` reads the source only from the registering owner's own import directories
(``<import root>/<owner>/``, `gateway.settings.Settings.owner_import_dirs`). A source outside them — another
owner's file, a symlink into it, a path that does not exist — is refused with one answer
(``NOT_FOUND_OR_FORBIDDEN``, reason ``source.not_found``: same code, message and details either way); content
another owner already registered is ``POLICY_DENIED`` (reason ``dataset.content_registered_by_another_owner``,
naming no dataset or owner). Every refusal is audited with its reason (`catalog.registry`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from catalog import registry
from catalog.columns import DatasetSpec
from catalog.errors import DomainError, not_found
from catalog.mock import MAX_MOCK_ROWS, mock_table
from gateway.audit import AuditEvent
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.datasets import DATASET_EXAMPLE, Dataset, MockTable, Withdrawal
from gateway.deps import Audit, Ctx, CurrentPrincipal, Owner
from gateway.journal import request_entry
from gateway.sealing import sealer_of
from gateway.services import datasets as dataset_service
from gateway.services.datasets import public_view

router = APIRouter(tags=["datasets"])


@router.post("/datasets", name="dataset.register", status_code=status.HTTP_201_CREATED, response_model=Dataset,
             **OUT, **doc("Register a dataset from your import directory (owner)", ErrorCode.POLICY_DENIED,
                          ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.ALREADY_EXISTS, status=201,
                          request_example={
                              "name": "tax_income", "source": "tax_income.csv",
                              "description": "Individual income tax, one row per person.", "grade": "important",
                              "personal": True, "columns": {
                                  "person_id": {"role": "id"},
                                  "district": {"role": "dimension", "domain": ["Liangxi", "Xinwu", "Binhu"]},
                                  "monthly_income": {"role": "measure", "bounds": [0, 200000]}}}))
async def register(spec: DatasetSpec, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    ev.dataset = spec.name
    s = ctx.settings

    def registered(conn: Connection, entry: AuditEvent) -> bool:  # the request's entry commits with the row
        entry.details["fingerprint"] = entry.output_digest = registry.fingerprint_in(conn, spec.name)
        return True

    try:
        reg = await run_in_threadpool(registry.register, ctx.engine, spec, owner.name, s.storage.area("data"),
                                      s.owner_import_dirs(owner.name), s.max_source_bytes, s.hash_alg,
                                      journal=request_entry(ctx.audit, ev, registered), sealer=sealer_of(ctx))
    except DomainError as e:
        reasons = [d["reason"] for d in e.details if isinstance(d.get("reason"), str)]
        if reasons:
            ev.details["reasons"] = reasons[:5]
        raise
    ev.details["fingerprint"] = reg.dataset.fingerprint
    ev.output_digest = reg.dataset.fingerprint
    return public_view(reg.dataset, owner)


@router.get("/datasets", name="dataset.list", response_model=list[Dataset], **OUT,
            **doc("Every registered dataset (exact row counts for its owner only)", response_example=[DATASET_EXAMPLE]))
def list_datasets(p: CurrentPrincipal, ctx: Ctx) -> list[dict[str, Any]]:
    return [public_view(d, p) for d in registry.list_all(ctx.engine)]


def _get(ctx: Ctx, name: str) -> registry.Dataset:
    ds = registry.get(ctx.engine, name)
    if ds is None:
        raise not_found("dataset")
    return ds


@router.get("/datasets/{name}", name="dataset.show", response_model=Dataset, **OUT,
            **doc("One dataset's declaration", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def show(name: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    ev.dataset = name
    return public_view(_get(ctx, name), p)


@router.get("/datasets/{name}/mock", name="dataset.mock", response_model=MockTable, **OUT,
            **doc("Synthetic rows from the declaration only (no real value)", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def mock(name: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit,
         rows: int = Query(100, ge=1, le=MAX_MOCK_ROWS), seed: int = Query(0, ge=0)) -> dict[str, Any]:
    ev.dataset = name
    ds = _get(ctx, name)
    table = mock_table(ds.name, ds.columns, rows, seed)
    return {"dataset": ds.name, "mock": True, "seed": seed, "columns": table.column_names,
            "rows": [list(r.values()) for r in table.to_pylist()]}


class WithdrawBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000, description="why the owner withdraws it (kept in the audit)")


@router.post("/datasets/{name}/withdraw", name="dataset.withdraw", response_model=Withdrawal, **OUT,
             **doc("Withdraw a dataset (its owner or an admin): its agreements are suspended, its open jobs cancelled "
                   "and refunded, nothing new runs on it (reason dataset.withdrawn); its copy is destroyed after the "
                   "grace period, the record is kept", ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.INVALID_REQUEST,
                   request_example={"reason": "the source system is being decommissioned"}))
async def withdraw(name: str, body: WithdrawBody, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    ev.dataset = name
    return await run_in_threadpool(dataset_service.withdraw, ctx, p, name, body.reason, ev)
