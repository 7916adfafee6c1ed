"""Secure aggregation over HTTP (docs/api.md, "Secure aggregation"): the server learns the sum of the survivors'
vectors.

``POST /secagg/rounds`` (an operator, grantee of an active agreement whose job kinds include ``train``:
`policies.Action.SECAGG_AGGREGATE`) opens a round for named participants → ``201 {"id", "config", ...}``. A round
cannot be aimed at one holder: at least three distinct participants, a threshold of at least three, the opener
never among them (``POLICY_DENIED``, `gateway.services.rounds.round_policy`); and every participant must be a party
to the agreement who may contribute (its owner or one of its ``holders``) and a principal that exists, is enabled
and is neither admin nor regulator. A name that fails any of these gets one answer — ``POLICY_DENIED``, reason
``secagg.participant_not_allowed`` — the same for a name that does not exist, is disabled, has the wrong role or
is not a party, so naming principals reveals nothing about which exist beyond the agreement's own parties.

Participants then drive the Bonawitz et al. protocol of `mpc.secagg`, one message kind per endpoint, each
message's ``sender`` being the authenticated principal (a disabled principal cannot authenticate, so it cannot
join or go on):

    POST /secagg/rounds/{id}/keys      AdvertiseKeys   →  GET .../keys       the key roster (U1)
    POST /secagg/rounds/{id}/shares    ShareKeys       →  GET .../shares     the caller's envelopes (U2)
    POST /secagg/rounds/{id}/masked    MaskedInput     →  GET .../survivors  the survivor list (U3)
    POST /secagg/rounds/{id}/unmask    UnmaskShares    →  GET .../result     (opener only) the sum

The ``GET`` endpoints answer ``{"round_id", "stage", "ready", "message", "abort_reason"}`` and accept ``?wait=S``
(≤ 30 s) to wait for the next stage instead of polling. ``GET /secagg/rounds/{id}`` is the round's public state,
``POST .../close`` lets the opener end a stage before its deadline, ``GET /secagg/rounds`` lists the caller's
rounds. The result is released only to the opener, re-authorized at release time (a revoked or suspended
agreement releases nothing), audited with ``output_digest`` = sha256 of the sum. Every request carries the round's
agreement in its audit entry, so the agreement's owner sees the round in their audit scope. Rounds live in the
store: any gateway process serves any call of a round and a restart loses none; every stage closure and every
abort is an audit entry of its own (``secagg.stage``, ``secagg.abort``). Round state, limits and lifetime:
`gateway.services.rounds`.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from catalog.errors import INVALID_REQUEST, DomainError
from gateway.audit import AuditEvent
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract import secagg as views
from gateway.deps import Audit, Ctx, CurrentPrincipal
from gateway.errors import mpc_refusal
from gateway.identities import Principal
from gateway.services.idempotency import Idempotent
from gateway.services.rounds import (
    DEFAULT_STAGE_TIMEOUT_S,
    KINDS,
    MAX_PARTICIPANTS,
    Published,
    Released,
    Round,
    RoundHeader,
    RoundRegistry,
    authorize_release,
    max_message_bytes,
    rounds_for,
)
from gateway.services.rounds import open_round as open_round_for
from mpc.errors import MpcError
from mpc.secagg import FRAME_MEDIA_TYPE, Stage, decode_frame

router = APIRouter(tags=["secure aggregation"])
#: What a participant's message can be refused with: an unknown round, a sender who is not a participant.
_MESSAGE_ERRORS = (ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED)

MAX_WAIT_S = 30.0


class OpenRound(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64, description="an active agreement you are the grantee of, with job "
                                                         "kind `train`")
    participants: list[str] = Field(min_length=1, max_length=MAX_PARTICIPANTS,
                                    description="at least three parties to the agreement (its owner or its holders, "
                                                "never you); their order fixes Shamir points and mask signs")
    threshold: int = Field(strict=True, description="t: a strict majority (n/2 < t ≤ n) and at least 3; the "
                                                    "round survives n − t dropouts")
    vector_length: int = Field(ge=1, strict=True, description="L: words per input vector")
    modulus_bits: int = Field(32, ge=1, le=32, strict=True, description="inputs and the sum live in Z_{2^m}")
    stage_timeout_s: StrictInt | StrictFloat = Field(DEFAULT_STAGE_TIMEOUT_S, description=(
        "each stage closes at the latest this long after it began"))
    task: dict[str, Any] | None = Field(None, description="public JSON shown to the participants (what to "
                                                          "contribute); never secrets or raw data")


def _message_schema(kind: str) -> dict[str, Any]:
    model = KINDS[kind]
    frame = {"type": "string", "format": "binary",
             "description": "the same message as one binary frame (docs/api.md, \"Binary secure-aggregation "
                            "messages\")"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()},
                                                          FRAME_MEDIA_TYPE: {"schema": frame}}}}


def _registry(ctx: Any) -> RoundRegistry:
    return rounds_for(ctx)


def _note(ev: AuditEvent, rnd: Round, closed: list[dict[str, Any]] | None = None) -> None:
    ev.agreement_id = rnd.agreement_id
    ev.details.update(round_id=rnd.id, stage=rnd.stage.value)
    if closed:
        ev.details["closed"] = closed


async def _header(reg: RoundRegistry, round_id: str, p: Principal) -> RoundHeader:
    """The round's immutable part (from memory after the first call in this process)."""
    head: RoundHeader = await run_in_threadpool(reg.header, round_id, p.name)
    return head


async def _read_message(request: Request, rnd: Round | RoundHeader, kind: str) -> Any:
    """The message's JSON-form dict, from a JSON body or a binary frame (`mpc.secagg.FRAME_MEDIA_TYPE`: its bytes
    raw, a masked vector as packed uint32 words), read no further than the round allows for the kind."""
    limit = max_message_bytes(rnd.config, kind)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise DomainError(INVALID_REQUEST, f"message larger than this round allows ({limit} bytes)")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == FRAME_MEDIA_TYPE:
        try:
            return decode_frame(bytes(body))
        except MpcError as exc:
            raise mpc_refusal(exc) from None
    try:
        return json.loads(body)
    except ValueError:
        raise DomainError(INVALID_REQUEST, "the body is not JSON") from None


async def _settle(fetch: Any, wait: float, reg: RoundRegistry, round_id: str | None) -> Any:
    """Call ``fetch`` (in the thread pool) until its answer is settled or ``wait`` seconds have passed. Between two
    calls the request parks on the event loop (no thread held, no sleep loop) until round ``round_id`` (``None``:
    any round) changes stage (`gateway.services.rounds.RoundSignals`: set by this process's commits, and on
    PostgreSQL by the other processes' through LISTEN/NOTIFY), or at the latest `RoundSignals.recheck_s` — a
    stage another process closed on SQLite, or a passed deadline, is then seen from the store."""
    if wait <= 0:
        return await run_in_threadpool(fetch)
    deadline = time.monotonic() + wait
    with reg.signals.watch(round_id) as changed:
        while True:
            changed.clear()  # before the read: a change committed while reading wakes the next wait at once
            view = await run_in_threadpool(fetch)
            left = deadline - time.monotonic()
            if getattr(view, "settled", True) or left <= 0:
                return view
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, reg.signals.recheck_s()))


WaitQuery = Query(0.0, ge=0.0, le=MAX_WAIT_S, description="seconds to wait for the stage to be ready")


# --- rounds ----------------------------------------------------------------------------------------------------

@router.post("/secagg/rounds", name="secagg.open", status_code=status.HTTP_201_CREATED, response_model=views.Round,
             **OUT,
             **doc("Open a secure-aggregation round (the agreement's grantee)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                   ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE, ErrorCode.QUOTA_EXCEEDED, status=201,
                   request_example=views.OPEN_REQUEST))
async def open_round(body: OpenRound, p: CurrentPrincipal, ctx: Ctx, ev: Audit,
                     _idem: Idempotent) -> dict[str, Any]:
    """Open a round (an operator under an active agreement with job kind `train`)."""
    ev.agreement_id = body.agreement_id

    def run() -> dict[str, Any]:
        rnd = open_round_for(ctx, p, body.agreement_id, body.participants, body.threshold, body.vector_length,
                             body.modulus_bits, body.stage_timeout_s, body.task, ev)
        _note(ev, rnd)
        ev.details.update(participants=list(rnd.config.participants[:100]), n=len(rnd.config.participants),
                          threshold=rnd.config.threshold, vector_length=rnd.config.vector_length,
                          modulus_bits=rnd.config.modulus_bits)
        return _registry(ctx).status(rnd, p.name)

    out: dict[str, Any] = await run_in_threadpool(run)
    return out


@dataclass(frozen=True)
class _Listing:
    rounds: list[dict[str, Any]]

    @property
    def settled(self) -> bool:
        return bool(self.rounds)


@router.get("/secagg/rounds", name="secagg.list", response_model=list[views.Round], **OUT,
            **doc("The rounds you opened or take part in"))
async def list_rounds(p: CurrentPrincipal, ctx: Ctx,
                      waiting_for_me: bool = Query(False, description="only rounds whose current stage waits for "
                                                                      "a message from you"),
                      wait: float = WaitQuery) -> list[dict[str, Any]]:
    """The rounds you opened or take part in (from the store, whichever gateway process opened them); with
    ``waiting_for_me`` and ``wait``, waits until one needs your message (how holders learn of new rounds)."""
    reg = _registry(ctx)

    def fetch() -> _Listing:
        return _Listing([reg.status(r, p.name) for r in reg.visible(p.name, waiting_for=waiting_for_me)])

    listing: _Listing = await _settle(fetch, wait if waiting_for_me else 0.0, reg, None)
    return listing.rounds


@router.get("/secagg/rounds/{round_id}", name="secagg.show", response_model=views.Round, **OUT,
            **doc("A round's public state", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def show_round(round_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """The round's public config, stage, deadline, survivors and task."""
    reg = _registry(ctx)
    rnd = reg.get(round_id, p.name)
    _note(ev, rnd)
    return reg.status(rnd, p.name)


@router.post("/secagg/rounds/{round_id}/close", name="secagg.close", response_model=views.Round, **OUT,
             **doc("End the current stage now (the opener)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                   ErrorCode.POLICY_DENIED))
def close_stage(round_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """The opener ends the current stage now; fewer than the threshold aborts the round."""
    reg = _registry(ctx)
    rnd = reg.get(round_id, p.name)
    _note(ev, rnd)
    closed, rnd = reg.close(round_id, p.name)
    _note(ev, rnd, closed)
    return reg.status(rnd, p.name)


# --- participants' messages --------------------------------------------------------------------------------------

async def _submit(kind: str, round_id: str, request: Request, p: Principal, ctx: Any, ev: AuditEvent) -> dict[str, Any]:
    reg = _registry(ctx)
    head = await _header(reg, round_id, p)
    ev.agreement_id = head.agreement_id
    ev.details["round_id"] = head.id
    data = await _read_message(request, head, kind)
    closed, rnd = await run_in_threadpool(reg.submit, round_id, p.name, kind, data)
    _note(ev, rnd, closed)
    return {"round_id": rnd.id, "accepted": KINDS[kind].model_fields["kind"].default, "stage": rnd.stage.value}


async def _published(what: str, round_id: str, p: Principal, ctx: Any, ev: AuditEvent, wait: float) -> dict[str, Any]:
    reg = _registry(ctx)
    head = await _header(reg, round_id, p)
    ev.agreement_id = head.agreement_id
    ev.details["round_id"] = head.id
    view: Published = await _settle(lambda: reg.publish(round_id, p.name, what), wait, reg, round_id)
    ev.details.update(stage=view.stage.value, ready=view.ready)
    return view.to_json()


@router.post("/secagg/rounds/{round_id}/keys", name="secagg.keys.send", response_model=views.Accepted, **OUT,
             **doc("Stage 0: advertise your public keys (participant)", *_MESSAGE_ERRORS,
                   openapi_extra=_message_schema("keys"), request_example=views.MESSAGES["keys"]))
async def send_keys(round_id: str, request: Request, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Stage 0: your two fresh public keys (`AdvertiseKeys`)."""
    return await _submit("keys", round_id, request, p, ctx, ev)


@router.get("/secagg/rounds/{round_id}/keys", name="secagg.keys.roster", response_model=views.Published, **OUT,
            **doc("The key roster, once stage 0 has closed", ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED))
async def key_roster(round_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit, wait: float = WaitQuery
                     ) -> dict[str, Any]:
    """The public keys of everyone who advertised (`KeyRoster`), once stage 0 has closed."""
    return await _published("keys", round_id, p, ctx, ev, wait)


@router.post("/secagg/rounds/{round_id}/shares", name="secagg.shares.send", response_model=views.Accepted, **OUT,
             **doc("Stage 1: send your encrypted shares (participant)", *_MESSAGE_ERRORS,
                   openapi_extra=_message_schema("shares"), request_example=views.MESSAGES["shares"]))
async def send_shares(round_id: str, request: Request, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Stage 1: one encrypted envelope of Shamir shares per neighbour (`ShareKeys`)."""
    return await _submit("shares", round_id, request, p, ctx, ev)


@router.get("/secagg/rounds/{round_id}/shares", name="secagg.shares.forwarded", response_model=views.Published, **OUT,
            **doc("The envelopes addressed to you, once stage 1 has closed", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                  ErrorCode.POLICY_DENIED))
async def forwarded_shares(round_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit, wait: float = WaitQuery
                           ) -> dict[str, Any]:
    """The envelopes addressed to you (`ForwardedShares`), once stage 1 has closed."""
    return await _published("shares", round_id, p, ctx, ev, wait)


@router.post("/secagg/rounds/{round_id}/masked", name="secagg.masked.send", response_model=views.Accepted, **OUT,
             **doc("Stage 2: send your masked input (participant)", *_MESSAGE_ERRORS,
                   openapi_extra=_message_schema("masked"), request_example=views.MESSAGES["masked"]))
async def send_masked(round_id: str, request: Request, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Stage 2: your masked input vector (`MaskedInput`)."""
    return await _submit("masked", round_id, request, p, ctx, ev)


@router.get("/secagg/rounds/{round_id}/survivors", name="secagg.survivors", response_model=views.Published, **OUT,
            **doc("The survivors whose inputs are summed, once stage 2 has closed", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                  ErrorCode.POLICY_DENIED))
async def survivors(round_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit, wait: float = WaitQuery
                    ) -> dict[str, Any]:
    """The survivors whose inputs are summed (`UnmaskRequest`), once stage 2 has closed."""
    return await _published("survivors", round_id, p, ctx, ev, wait)


@router.post("/secagg/rounds/{round_id}/unmask", name="secagg.unmask.send", response_model=views.Accepted, **OUT,
             **doc("Stage 3: send your unmasking shares (participant)", *_MESSAGE_ERRORS,
                   openapi_extra=_message_schema("unmask"), request_example=views.MESSAGES["unmask"]))
async def send_unmask(round_id: str, request: Request, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Stage 3: shares of the survivors' self-mask seeds and of the dropped clients' mask keys (`UnmaskShares`)."""
    return await _submit("unmask", round_id, request, p, ctx, ev)


@router.get("/secagg/rounds/{round_id}/result", name="secagg.result", response_model=views.RoundResult, **OUT,
            **doc("The sum of the survivors' inputs (the opener)", ErrorCode.NOT_FOUND_OR_FORBIDDEN,
                  ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE))
async def result(round_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit, wait: float = WaitQuery
                 ) -> dict[str, Any]:
    """The opener: the sum of the survivors' inputs (mod 2^m) and the survivor list — nothing else."""
    reg = _registry(ctx)
    rnd = await run_in_threadpool(reg.get, round_id, p.name)
    _note(ev, rnd)
    view: Released | Published = await _settle(lambda: reg.result(round_id, p.name), wait, reg, round_id)
    if isinstance(view, Published):
        ev.details.update(stage=view.stage.value, ready=False)
        return view.to_json()
    ev.details["stage"] = Stage.DONE.value

    # re-authorize at release: a revoked or suspended agreement releases nothing
    await run_in_threadpool(authorize_release, ctx, p, rnd)
    ev.output_digest = view.digest
    ev.details.update(ready=True, survivors=len(view.survivors))
    return view.to_json()
