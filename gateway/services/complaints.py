"""Complaints and objections (投诉与异议): the API's and the console's one way to file and move them.

A subject is never stored or logged raw: an owner filing on a person's behalf may name the person by the raw id
(``subject``, in the spelling the owner's verification products use: a string as stored, an integer as its
decimal text), which is hashed here with the product's subject key (`gateway.keys.Keys.subject_hash`, the same
keyed hash every check records); anyone may name a subject by that hash (``subject_hash``). The request's audit
entry records the hash only, and commits with the change (`gateway.journal.request_entry`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from catalog.columns import Kind
from catalog.errors import invalid
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.journal import request_entry
from gateway.services.jobs import actor_of
from policies import complaints as policy
from sandbox.verify import canonical_subject
from vocab.roles import Role

__all__ = ["FileBody", "MoveBody", "file", "move", "subject_hash_of"]


class FileBody(BaseModel):  # ``POST /complaints`` and the console's form
    model_config = ConfigDict(extra="forbid")
    kind: Literal["complaint", "objection"] = "complaint"
    target_kind: Literal["agreement", "job", "output", "subject"]
    target: str | None = Field(
        None, max_length=64, description="the agreement's or job's id (for an output: its job's id)"
    )
    agreement_id: str | None = Field(
        None,
        max_length=64,
        description="for a subject: the agreement it is named "
        "under (an owner filing on a person's behalf "
        "may leave it out)",
    )
    subject: Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt | None = Field(
        None, description="the person's raw id (owners only, on the person's behalf): hashed, never stored"
    )
    subject_hash: str | None = Field(None, max_length=64, description="the subject's keyed hash (hs:…)")
    text: str = Field(min_length=1, max_length=2000)


class MoveBody(BaseModel):  # ``POST /complaints/{id}/{investigate|resolve|reject}``
    model_config = ConfigDict(extra="forbid")
    reasons: list[Annotated[str, Field(max_length=2000)]] = Field(
        default_factory=list, max_length=20, description="required to resolve or reject"
    )


def subject_hash_of(ctx: AppContext, p: Principal, raw: str | int | None, given: str | None) -> str | None:
    """The keyed hash of the subject named (a raw id only from an owner; never both)."""
    if raw is None:
        return given
    if given is not None:
        raise invalid(
            "name the subject once: by its id or by its hash", [{"field": "subject", "reason": "subject.twice"}]
        )
    if p.role.value != Role.OWNER:
        raise invalid(
            "only an owner names a person by the raw id; name the subject by its hash",
            [{"field": "subject", "reason": "subject.raw_not_allowed"}],
        )
    canonical = str(raw) if isinstance(raw, int) else canonical_subject(Kind.STRING, raw)
    return ctx.keys.subject_hash(canonical)


def file(ctx: AppContext, p: Principal, body: FileBody, ev: AuditEvent) -> dict[str, Any]:
    """File a complaint or objection; the request's entry (the subject as its hash) commits with it."""
    subject_hash = subject_hash_of(ctx, p, body.subject, body.subject_hash)
    complaint_id = policy.new_complaint_id()
    ev.subject_hash = subject_hash
    ev.agreement_id = body.agreement_id or (body.target if body.target_kind == "agreement" else None)
    ev.details.update(complaint_id=complaint_id, kind=body.kind, target_kind=body.target_kind)
    if body.target_kind != "subject":
        ev.details["target"] = body.target
    out = policy.file_complaint(
        ctx.engine,
        actor_of(p),
        kind=body.kind,
        target_kind=body.target_kind,
        text=body.text,
        target=body.target,
        agreement_id=body.agreement_id,
        subject_hash=subject_hash,
        days=ctx.settings.complaint_days,
        complaint_id=complaint_id,
        journal=request_entry(ctx.audit, ev),
    )
    return out.public()


def move(
    ctx: AppContext, p: Principal, complaint_id: str, to: str, reasons: list[str], ev: AuditEvent
) -> dict[str, Any]:
    """Investigate, resolve or reject (with reasons); the request's entry commits with the move."""
    ev.details.update(complaint_id=complaint_id, to=to, reasons=reasons)
    current = policy.show_complaint(ctx.engine, actor_of(p), complaint_id)
    ev.agreement_id, ev.subject_hash = current.agreement_id, current.subject_hash
    return policy.transition(
        ctx.engine, actor_of(p), complaint_id, to, reasons=reasons, journal=request_entry(ctx.audit, ev)
    ).public()
