"""Complaints and objections (投诉与异议, docs/complaints.md): file, list, show, investigate, resolve, reject.

Thin: `gateway.services.complaints` hashes a raw subject and journals each change; `policies.complaints` decides
who reads and moves what.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Query, status

from gateway.contract import OUT, ErrorCode
from gateway.contract import doc as describe
from gateway.contract.complaints import Complaint
from gateway.deps import Audit, Ctx, CurrentPrincipal
from gateway.services import complaints as service
from gateway.services.complaints import FileBody, MoveBody
from gateway.services.jobs import actor_of
from policies import complaints as policy

router = APIRouter(tags=["complaints"])

FILE_EXAMPLE = {
    "kind": "objection",
    "target_kind": "subject",
    "subject": "P0001",
    "text": "the person objects to credit checks",
}


@router.post(
    "/complaints",
    name="complaint.file",
    status_code=status.HTTP_201_CREATED,
    response_model=Complaint,
    **OUT,
    **describe(
        "File a complaint or objection on an agreement, job, output or subject",
        ErrorCode.NOT_FOUND_OR_FORBIDDEN,
        ErrorCode.INVALID_REQUEST,
        status=201,
        request_example=FILE_EXAMPLE,
    ),
)
def file_complaint(p: CurrentPrincipal, ctx: Ctx, ev: Audit, body: FileBody) -> dict[str, Any]:
    """Routed to the owner concerned and the data authority, due in the configured number of days. An owner's
    objection naming a subject (the raw id, hashed here, or its hash) suspends that subject's checks under the
    owner's agreements until it is resolved or rejected."""
    return service.file(ctx, p, body, ev)


@router.get(
    "/complaints",
    name="complaint.list",
    response_model=list[Complaint],
    **OUT,
    **describe("The complaints you may read, newest first", ErrorCode.INVALID_REQUEST),
)
def list_complaints(
    p: CurrentPrincipal,
    ctx: Ctx,
    ev: Audit,
    state: Literal["open", "investigating", "resolved", "rejected"] | None = Query(None),
) -> list[dict[str, Any]]:
    """Filers read theirs, owners those routed to them, the authority, admins and regulators all."""
    return [c.public() for c in policy.list_complaints(ctx.engine, actor_of(p), state=state)]


@router.get(
    "/complaints/{complaint_id}",
    name="complaint.show",
    response_model=Complaint,
    **OUT,
    **describe("One complaint and its history", ErrorCode.NOT_FOUND_OR_FORBIDDEN),
)
def show_complaint(complaint_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    ev.details["complaint_id"] = complaint_id
    return policy.show_complaint(ctx.engine, actor_of(p), complaint_id).public()


def _move(name: str, to: str, summary: str) -> None:
    @router.post(
        f"/complaints/{{complaint_id}}/{name}",
        name=f"complaint.{name}",
        response_model=Complaint,
        **OUT,
        **describe(
            summary,
            ErrorCode.NOT_FOUND_OR_FORBIDDEN,
            ErrorCode.INVALID_REQUEST,
            request_example={"reasons": ["the processing was corrected"]},
        ),
    )
    def move(
        complaint_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit, body: MoveBody = Body(default_factory=MoveBody)
    ) -> dict[str, Any]:
        return service.move(ctx, p, complaint_id, to, body.reasons, ev)

    move.__name__ = f"{name}_complaint"


_move("investigate", "investigating", "Start investigating a complaint (its owner, the authority, an admin)")
_move("resolve", "resolved", "Resolve a complaint, with reasons (its owner, the authority, an admin)")
_move("reject", "rejected", "Reject a complaint, with reasons (its owner, the authority, an admin)")
