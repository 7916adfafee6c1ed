"""Lineage of a released output, for regulators: output digest (or job id) → job → agreement → datasets.

`trace` answers, from the metadata store alone, where a released aggregate, model or verdict came from: the job
that produced it (its exact spec hash, who submitted and who approved it, its cost), the agreement it ran under
(parties, version and document hash, state), the datasets it read with the fingerprints the job was bound to (at
submission, re-checked at approval and at run time) next to the fingerprints they have now (a mismatch means the
data were re-registered since), the model registry record for a model, and every audit entry that carries the
digest or the job id. Outputs that are not jobs (a secure-aggregation sum, a verification receipt, encrypted
scores) are traced through their audit entries and the agreement those name.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from catalog import models as model_registry
from catalog import registry
from catalog.errors import not_found
from gateway import _tables as t
from gateway.context import AppContext
from policies import _tables as pt
from policies.agreements.record import load_agreement
from policies.jobs import load_job

__all__ = ["ENTRY_FIELDS", "trace"]

MAX_ENTRIES = 200
ENTRY_FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code", "epsilon",
                "output_digest", "hash")


def _agreement(ctx: AppContext, agreement_id: str | None) -> dict[str, Any] | None:
    ag = load_agreement(ctx.engine, agreement_id) if agreement_id else None
    if ag is None:
        return None
    view = ag.public()
    return {k: view.get(k) for k in ("id", "state", "version", "document_hash", "owner", "grantee", "title",
                                     "purposes", "job_kinds", "valid_from", "valid_until", "budget",
                                     "outputs_sealed")}


def _datasets(ctx: AppContext, fingerprints: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for name, bound in sorted(fingerprints.items()):
        ds = registry.get(ctx.engine, name)
        rows.append({"name": name, "fingerprint_bound": bound, "fingerprint_now": ds.fingerprint if ds else None,
                     "unchanged": ds is not None and ds.fingerprint == bound,
                     "owner": ds.owner if ds else None, "grade": ds.grade.value if ds else None})
    return rows


def _entries(ctx: AppContext, digest: str | None, job_id: str | None) -> list[dict[str, Any]]:
    e = t.audit_entries.c
    conds = []
    if digest:
        conds.append(e.output_digest == digest)
    if job_id:
        conds.append(e.details.like(f'%"job_id":"{job_id}"%'))
    if not conds:
        return []
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(t.audit_entries).where(or_(*conds)).order_by(e.seq).limit(MAX_ENTRIES)).all()
    return [{k: r._mapping[k] for k in ENTRY_FIELDS} for r in rows]


def _job_by_digest(ctx: AppContext, digest: str) -> str | None:
    with ctx.engine.connect() as conn:
        found: str | None = conn.execute(select(pt.jobs.c.id).where(pt.jobs.c.output_digest == digest)).scalar()
    return found


def trace(ctx: AppContext, key: str) -> dict[str, Any]:
    """The lineage of ``key`` (an output digest ``sha256:…`` or a job id); ``NOT_FOUND_OR_FORBIDDEN`` if nothing
    released or recorded carries it."""
    key = key.strip()[:200]
    is_digest = key.startswith(("sha256:", "sm3:"))
    job_id = _job_by_digest(ctx, key) if is_digest else key
    job = load_job(ctx.engine, job_id) if job_id else None
    digest = job.output_digest if job is not None else (key if is_digest else None)
    entries = _entries(ctx, digest, job.id if job else None)
    if job is None and not entries:
        raise not_found("output")
    out: dict[str, Any] = {"key": key, "output_digest": digest, "job": None, "model": None, "datasets": []}
    agreement_id = job.agreement_id if job else next((x["agreement_id"] for x in entries if x["agreement_id"]), None)
    if job is not None:
        out["job"] = job.public()
        out["datasets"] = _datasets(ctx, dict(job.fingerprints))
        model = next((m for m in model_registry.list_models(ctx.engine) if m.job_id == job.id), None)
        if model is not None:
            out["model"] = {"id": model.id, "certificate_id": model.certificate_id, "algorithm": model.algorithm,
                            "purpose": model.purpose, "valid_until": model.valid_until.isoformat(),
                            "source_datasets": model.source_datasets}
    out["agreement"] = _agreement(ctx, agreement_id)
    out["entries"] = entries
    producer = next((x["action"] for x in entries if digest and x["output_digest"] == digest), None)
    out["produced_by"] = f"job.{job.kind.value}" if job is not None else producer
    return out
