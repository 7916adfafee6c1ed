"""The model registry and encrypted scoring (API.md "Models and scoring (HE)").

``GET /models`` and ``GET /models/{id}``: every authenticated principal reads the cards and certificates of
released models (never the weights or where they are stored).

``POST /models/{id}/score`` (a bank, under an active agreement with job kind ``score`` whose datasets cover the
model's source datasets and whose purposes include the model's): the bank sends a *public* CKKS context and its
applicants' encoded features encrypted under its own key (``layout`` ``row``: one ciphertext per applicant;
``columns``: one ciphertext per feature for up to N/2 applicants) and receives the logits ``w·x + b`` under its
key, re-randomised and noise-flooded (`mpc.he.score_encrypted`'s pieces); the weights never leave. Order:
authorize and meter the call (`policies.authorize`, ``model.score``) → validate the context (cached per bank
and context digest: `ContextCache`) → take the request's exposed scores (`mpc.he.scores_exposed`: 2 per row
ciphertext, N per column request) from the (agreement, model) extraction quota stated in the card
(`catalog.models.consume_scores`, ``QUOTA_EXCEEDED`` beyond it) → evaluate → on a failed evaluation give the
scores back. Every answer and refusal is audited (model,
layout, counts, request digest; the output digest on success) and padded to the latency bucket.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

import policies
from catalog import models as model_registry
from catalog.errors import INTERNAL, INVALID_REQUEST, POLICY_DENIED, DomainError, not_found
from catalog.models import ModelRecord
from gateway import latency
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.deps import Audit, Ctx, CurrentPrincipal
from gateway.identities import Principal
from gateway.jobflow import actor_of
from gateway.routes.agreements import note_expiry
from gateway.routes.verifications import ContextCache
from mpc.he import LinearModel, load_scoring_context, score_columns, score_rows, scores_exposed
from policies import Action
from sandbox.train import load_linear_weights

router = APIRouter(tags=["models"])

MAX_CIPHERTEXTS = 512
SCORING_CONTEXTS = ContextCache()


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: str = Field(description="base64 public CKKS TenSEAL context (no secret key; Galois keys for `row`)")
    ciphertexts: list[str] = Field(min_length=1, max_length=MAX_CIPHERTEXTS,
                                   description="row: one per applicant; columns: one per encoded feature")
    layout: Literal["row", "columns"]
    agreement_id: str | None = Field(None, max_length=64, description="default: your one active agreement that "
                                                                      "allows scoring this model")


@router.get("/models", name="model.list")
def list_models(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, Any]]:
    """Every released model's card and certificate (never the weights)."""
    return [m.public() for m in model_registry.list_models(ctx.engine)]


@router.get("/models/{model_id}", name="model.show")
def show(model_id: str, _: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """One model: features and encoding, the DP guarantee, metrics, source datasets, certificate, scoring terms."""
    m = model_registry.get_model(ctx.engine, model_id)
    if m is None:
        raise not_found("model")
    ev.agreement_id = m.agreement_id
    ev.details["model_id"] = m.id
    return m.public()


# --- encrypted scoring -----------------------------------------------------------------------------------------

_weights: dict[tuple[str, str], LinearModel] = {}
_weights_lock = threading.Lock()


def linear_model(ctx: AppContext, m: ModelRecord) -> LinearModel:
    """The model's plaintext (w, b), read once from its safetensors file and checked against the card."""
    key = (m.id, m.output_digest)
    with _weights_lock:
        cached = _weights.get(key)
    if cached is not None:
        return cached
    root = ctx.settings.models_dir.resolve()
    path = (root / m.weights_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise DomainError(INTERNAL, "model weights unavailable")
    expected = (m.card.get("weights") or {}).get("sha256") if isinstance(m.card, dict) else None
    if isinstance(expected, str):
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if expected.removeprefix("sha256:") != actual:
            raise DomainError(INTERNAL, "model weights do not match the card")
    try:
        w, b, names = load_linear_weights(Path(path))
    except DomainError:
        raise DomainError(INTERNAL, "model weights unreadable") from None
    width = m.card.get("input_width") if isinstance(m.card, dict) else None
    if isinstance(width, int) and width != len(names):
        raise DomainError(INTERNAL, "model weights do not match the card")
    model = LinearModel(tuple(float(v) for v in w), float(b))
    with _weights_lock:
        _weights[key] = model
    return model


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


def _score(ctx: AppContext, p: Principal, model_id: str, body: ScoreBody, ev: AuditEvent) -> dict[str, Any]:
    context_digest = "sha256:" + hashlib.sha256(body.context.encode()).hexdigest()
    h = hashlib.sha256(context_digest.encode())
    for ct in body.ciphertexts:
        h.update(b"|" + ct.encode())
    ev.details.update(model_id=model_id, layout=body.layout, ciphertexts=len(body.ciphertexts),
                      request_digest="sha256:" + h.hexdigest())
    m = model_registry.get_model(ctx.engine, model_id)
    if m is None:
        raise not_found("model")
    ev.dataset = ",".join(sorted(m.source_datasets)) or None
    if m.algorithm != "logistic_regression":
        raise DomainError(INVALID_REQUEST, "only linear models can be scored under encryption",
                          [{"field": "model", "algorithm": m.algorithm}])
    if not m.valid_at(dt.datetime.now(dt.UTC)):
        raise DomainError(POLICY_DENIED, "the model's certificate is not valid now",
                          [{"reason": "model.certificate_invalid", "valid_until": m.valid_until.isoformat()}])
    agreement_id = body.agreement_id or _pick_agreement(ctx, p, m)
    ev.agreement_id = agreement_id
    note_expiry(ctx, agreement_id)
    policies.authorize(ctx.engine, actor_of(p), Action.MODEL_SCORE, agreement_id,
                       datasets=sorted(m.source_datasets), columns=_columns(m), purpose=m.purpose)
    model = linear_model(ctx, m)
    public, lock = SCORING_CONTEXTS.get((p.name, "score", body.layout, context_digest),
                                        lambda: load_scoring_context(body.context, body.layout))
    exposed = scores_exposed(body.layout, len(body.ciphertexts), public.info.poly_modulus_degree)
    ev.details["scores_exposed"] = exposed
    used = model_registry.consume_scores(ctx.engine, agreement_id, m.id, exposed, m.score_limit)
    try:
        with lock:
            if body.layout == "row":
                out = score_rows(public, body.ciphertexts, model)
            else:
                out = [score_columns(public, body.ciphertexts, model)]
    except BaseException:
        model_registry.refund_scores(ctx.engine, agreement_id, m.id, exposed)
        raise
    digest = hashlib.sha256()
    for ct in out:
        digest.update(ct.encode() + b"|")
    ev.output_digest = "sha256:" + digest.hexdigest()
    return {"ciphertexts": out, "layout": body.layout, "scores_counted": exposed, "scores_used": used,
            "scores_limit": m.score_limit}


@router.post("/models/{model_id}/score", name="model.score")
async def score(model_id: str, body: ScoreBody, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Encrypted scoring: logits of the bank's applicants under the bank's key; the weights never leave."""
    ev.agreement_id = body.agreement_id
    async with latency.padded(ctx.settings.latency_bucket_ms):
        out: dict[str, Any] = await run_in_threadpool(_score, ctx, p, model_id, body, ev)
        return out
