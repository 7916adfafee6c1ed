"""Encrypted scoring of released linear models (HE): the bank's public CKKS context and encrypted features in,
decisions (the masked sign of score − the bank's encrypted cut-off) or granted logits out; the weights never leave.

Order of a request (`score`): the agreement's decision without metering (`policies.check`) → the grant (logits,
layout: ``POLICY_DENIED`` with reason ``score.logits_not_granted`` / ``score.layout_not_granted``, nothing
metered) → the call's permit (`policies.permit`, ``model.score``: decided, quotas from a snapshot, nothing metered
yet) → validate the context (cached per bank and context digest: `gateway.caches.Caches.scoring_contexts`) →
evaluate → in one transaction the agreement's meters, the request's exposed answers from the (agreement, model,
output) extraction quota stated in the card (`catalog.models.consume_scores_in`) and the request's audit entry
(`gateway.journal`: all or nothing). The answer leaves only if that transaction commits; a failed evaluation or a
quota taken meanwhile by a concurrent call meters nothing. The route (`gateway.routes.models`) pads every answer
and refusal to the latency bucket.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

import policies
from catalog import models as model_registry
from catalog.errors import AGREEMENT_INACTIVE, INTERNAL, INVALID_REQUEST, POLICY_DENIED, DomainError, not_found
from catalog.fingerprint import digest as fingerprint_digest
from catalog.models import ModelRecord
from catalog.sealed import SealedError, readable_path
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.journal import request_entry
from gateway.sealing import sealer_of
from gateway.services.agreements import note_expiry
from gateway.services.jobs import actor_of
from gateway.services.storage import check_model
from mpc.he import (
    LinearModel,
    decide_columns,
    decide_rows,
    decisions_exposed,
    declared_size,
    load_scoring_context,
    score_columns,
    score_rows,
    scores_exposed,
)
from policies import Action, disposal
from policies.access import RequestFacts
from sandbox.train import load_linear_weights

__all__ = ["MAX_CIPHERTEXTS", "ScoreBody", "linear_model", "score"]

MAX_CIPHERTEXTS = 512


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: str = Field(description="base64 public CKKS TenSEAL context (no secret key; Galois keys for `row`)")
    ciphertexts: list[str] = Field(min_length=1, max_length=MAX_CIPHERTEXTS,
                                   description="row: one per applicant; columns: one per encoded feature")
    layout: Literal["row", "columns"]
    output: Literal["decision", "logit"] = Field("decision", description="decision: the masked sign of score − your "
                                                 "encrypted cut-off; logit: w·x + b (only where the agreement grants "
                                                 "score_logits)")
    cutoff: str | None = Field(None, description="decision only: base64 CKKS Enc(t) under the same key, the cut-off "
                                                 "of applicant i in slot i (row: of the i-th ciphertext)")
    agreement_id: str | None = Field(None, max_length=64, description="default: your one active agreement that "
                                                                      "allows scoring this model")


def linear_model(ctx: AppContext, m: ModelRecord) -> LinearModel:
    """The model's plaintext (w, b), read once from its safetensors file and checked against the card (kept in
    the context's `gateway.caches.Caches.model_weights`). The stored file is verified against the card's digest on
    every call, as a dataset's copy is before a job reads it (`gateway.services.storage.check_model`: ``UNAVAILABLE``
    ``storage.missing`` / ``storage.fingerprint_mismatch``, audited ``storage.integrity``)."""
    path = check_model(ctx, m)
    return ctx.caches.model_weights.get((m.id, m.output_digest), lambda: _load_linear_model(ctx, m, path))


def _load_linear_model(ctx: AppContext, m: ModelRecord, path: Path) -> LinearModel:
    expected = (m.card.get("weights") or {}).get("sha256") if isinstance(m.card, dict) else None
    try:  # weights sealed at rest are decrypted into this process's memory only (catalog.sealed)
        with readable_path(path, sealer_of(ctx)) as readable:
            if isinstance(expected, str):  # "<alg>:<hex>" of the home's suite (a bare hex is SHA-256)
                alg, _, hexdigest = expected.rpartition(":")
                if alg not in ("", "sha256", "sm3"):
                    raise DomainError(INTERNAL, "model weights do not match the card")
                actual = fingerprint_digest(readable.read_bytes(), "sm3" if alg == "sm3" else "sha256")
                if actual.partition(":")[2] != hexdigest:
                    raise DomainError(INTERNAL, "model weights do not match the card")
            try:
                w, b, names = load_linear_weights(readable)
            except DomainError:
                raise DomainError(INTERNAL, "model weights unreadable") from None
    except SealedError:  # its data key destroyed, or the file tampered with
        raise DomainError(INTERNAL, "model weights unreadable") from None
    width = m.card.get("input_width") if isinstance(m.card, dict) else None
    if isinstance(width, int) and width != len(names):
        raise DomainError(INTERNAL, "model weights do not match the card")
    return LinearModel(tuple(float(v) for v in w), float(b))


def _pick_agreement(ctx: AppContext, p: Principal, m: ModelRecord) -> str:
    needed = set(m.source_datasets)
    mine = [ag for ag in policies.list_agreements(ctx.engine, actor_of(p), state="active")
            if ag.grantee == p.name and "score" in ag.document.job_kinds and needed <= set(ag.document.datasets)]
    if len(mine) != 1:
        raise DomainError(INVALID_REQUEST, "name the agreement to score under (agreement_id)",
                          [{"field": "agreement_id", "problem": "required: you hold "
                            f"{'no' if not mine else 'several'} active agreements that allow scoring this model",
                            "candidates": [ag.id for ag in mine]}])
    return mine[0].id


def _columns(m: ModelRecord) -> dict[str, list[str]] | None:
    if len(m.source_datasets) != 1:
        return None
    (name,) = m.source_datasets
    return {name: sorted(m.features)}


def _granted(ctx: AppContext, agreement_id: str, body: ScoreBody) -> None:
    """The agreement's scoring grant: logits only with ``score_logits``, the layout ``score_layout`` allows."""
    ag = policies.load_agreement(ctx.engine, agreement_id)
    assert ag is not None  # policies.check allowed the request, so the agreement exists
    doc = ag.document
    if body.output == "logit" and not doc.score_logits:
        raise DomainError(POLICY_DENIED, "the agreement grants decisions only, not logits",
                          [{"reason": "score.logits_not_granted", "output": "logit"}])
    if doc.score_layout not in ("any", body.layout):
        raise DomainError(POLICY_DENIED, f"the agreement allows the {doc.score_layout} layout only",
                          [{"reason": "score.layout_not_granted", "layout": body.layout, "allowed": doc.score_layout}])


def _not_revoked(ctx: AppContext, m: ModelRecord) -> None:
    """``AGREEMENT_INACTIVE`` for a model whose certificate the disposal revoked (`gateway.services.disposal`), or
    whose agreement has ended under a clause that revokes derived models while that disposal is still to run."""
    reason = m.revoked_reason
    if reason is None:
        ag = policies.load_agreement(ctx.engine, m.agreement_id)
        case = ag and disposal.ended_case(ag, dt.datetime.now(dt.UTC))
        if ag is not None and case and ag.document.exit.applies_to(case) and ag.document.exit.models == "revoke":
            reason = f"agreement.{case}"
    if reason is not None:
        raise DomainError(AGREEMENT_INACTIVE, "the model's certificate was revoked when its agreement ended",
                          [{"reason": "model.certificate_revoked", "cause": reason, "agreement_id": m.agreement_id}])


def score(ctx: AppContext, p: Principal, model_id: str, body: ScoreBody, ev: AuditEvent) -> dict[str, Any]:
    """Score the bank's encrypted applicants with the model (see the module docstring for the order of checks);
    fills ``ev`` with the model, layout, output, counts and digests."""
    suite = ctx.keys.suite  # the home's cryptographic suite: sha256: or sm3: digests
    context_digest = suite.digest(body.context.encode())
    h = suite.hasher()
    h.update(context_digest.encode())
    for ct in body.ciphertexts:
        h.update(b"|" + ct.encode())
    if body.cutoff is not None:
        h.update(b"|cutoff|" + body.cutoff.encode())
    ev.details.update(model_id=model_id, layout=body.layout, output=body.output, ciphertexts=len(body.ciphertexts),
                      request_digest=f"{suite.hash_name}:{h.finalize().hex()}")
    decision = body.output == "decision"
    if decision != (body.cutoff is not None):
        raise DomainError(INVALID_REQUEST, "a decision needs the encrypted cut-off; a logit takes none",
                          [{"field": "cutoff", "problem": "required for output 'decision'" if decision
                            else "only for output 'decision'"}])
    m = model_registry.get_model(ctx.engine, model_id)
    if m is None:
        raise not_found("model")
    ev.dataset = ",".join(sorted(m.source_datasets)) or None
    if m.algorithm != "logistic_regression":
        raise DomainError(INVALID_REQUEST, "only linear models can be scored under encryption",
                          [{"field": "model", "algorithm": m.algorithm}])
    _not_revoked(ctx, m)
    if not m.valid_at(dt.datetime.now(dt.UTC)):
        raise DomainError(POLICY_DENIED, "the model's certificate is not valid now",
                          [{"reason": "model.certificate_invalid", "valid_until": m.valid_until.isoformat()}])
    agreement_id = body.agreement_id or _pick_agreement(ctx, p, m)
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    scope = RequestFacts(datasets=sorted(m.source_datasets), columns=_columns(m), purpose=m.purpose)
    policies.check(ctx.engine, actor_of(p), Action.MODEL_SCORE, agreement_id, **scope).raise_if_denied()
    _granted(ctx, agreement_id, body)  # before anything is metered
    allowed = policies.permit(ctx.engine, actor_of(p), Action.MODEL_SCORE, agreement_id, **scope)
    model = linear_model(ctx, m)
    public, lock = ctx.caches.scoring_contexts.get((p.name, "score", body.layout, context_digest),
                                                   lambda: load_scoring_context(body.context, body.layout))
    if body.cutoff is not None:
        exposed = decisions_exposed(body.layout, len(body.ciphertexts), declared_size(body.cutoff))
    else:
        exposed = scores_exposed(body.layout, len(body.ciphertexts), public.info.poly_modulus_degree)
    ev.details["scores_exposed"] = exposed
    limit = m.limit_for(body.output)
    # Evaluate first; the ciphertexts leave only once the agreement's meters and the model's quota commit with the
    # request's entry (one transaction: all or nothing). A quota taken meanwhile by a concurrent call refuses here.
    with lock:
        if body.cutoff is not None:
            out = (decide_rows(public, body.ciphertexts, body.cutoff, model) if body.layout == "row"
                   else [decide_columns(public, body.ciphertexts, body.cutoff, model)])
        elif body.layout == "row":
            out = score_rows(public, body.ciphertexts, model)
        else:
            out = [score_columns(public, body.ciphertexts, model)]
    digest = suite.hasher()
    for ct in out:
        digest.update(ct.encode() + b"|")
    output_digest = f"{suite.hash_name}:{digest.finalize().hex()}"

    def answered(_conn: Connection, entry: AuditEvent) -> bool:
        entry.output_digest = output_digest
        return True

    with ctx.engine.begin() as conn:
        allowed.consume_in(conn)
        used = model_registry.consume_scores_in(conn, agreement_id, m.id, exposed, limit, output=body.output)
        request_entry(ctx.audit, ev, answered)(conn)
    ev.output_digest = output_digest
    return {"ciphertexts": out, "layout": body.layout, "output": body.output, "scores_counted": exposed,
            "scores_used": used, "scores_limit": limit}
