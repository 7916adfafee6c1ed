"""The model registry, encrypted scoring and the certificate registry (docs/api.md, "Models and scoring (HE)",
"Certificates").

``GET /certificates/{id}``: any authenticated principal verifies a product's or an output's certificate (status
now, what it covers, its sources); ``GET /certificates?agreement_id=`` lists an agreement's certificates for its
readers (`gateway.services.certificates`).

``GET /models`` and ``GET /models/{id}``: every authenticated principal reads the cards and certificates of
released models (never the weights or where they are stored).

``POST /models/{id}/score`` (a bank, under an active agreement with job kind ``score`` whose datasets cover the
model's source datasets and whose purposes include the model's): the bank sends a *public* CKKS context and its
applicants' encoded features encrypted under its own key (``layout`` ``row``: one ciphertext per applicant;
``columns``: one ciphertext per feature for up to N/2 applicants). The weights never leave. Two outputs:

- ``output: "decision"`` (the default): the bank also sends ``cutoff``, its cut-offs encrypted under the same key
  (applicant i in slot i), and receives ``Enc(r·(w·x + b − t + η))`` (`mpc.he.decide_rows` / `decide_columns`):
  only the sign is meant to be read (score ≥ cut-off); the service never sees the cut-offs.
- ``output: "logit"``: ``Enc(w·x + b)``, flooded (`mpc.he.score_rows` / `score_columns`), only under an agreement
  whose document grants ``score_logits``.

An agreement's ``score_layout`` (``row`` | ``columns`` | ``any``) restricts the layout. Order: the agreement's
decision without metering (`policies.check`) → the grant (logits, layout: ``POLICY_DENIED`` with reason
``score.logits_not_granted`` / ``score.layout_not_granted``, nothing metered) → authorize and meter the call
(`policies.authorize`, ``model.score``) → validate the context (cached per bank and context digest:
`gateway.caches.Caches.scoring_contexts`) → take the request's exposed answers from the (agreement, model, output)
extraction quota stated in the card (`catalog.models.consume_scores`; decisions: `mpc.he.decisions_exposed`, 2 per
row ciphertext or per declared column applicant; logits: `mpc.he.scores_exposed`, 2 per row ciphertext, N per
column request; ``QUOTA_EXCEEDED`` beyond it) → evaluate → on a failed evaluation give the answers back. Every
answer and refusal is audited (model, layout, output, counts, request digest; the output digest on success) and
padded to the latency bucket. The orchestration is `gateway.services.scoring`; this module parses, pads and shapes.
The body is JSON (base64 ciphertexts) or a binary frame of raw ciphertexts, and the answer a frame when ``Accept``
asks for it (`gateway.he_frames`; docs/api.md, "Binary bodies for ciphertexts").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from catalog import models as model_registry
from catalog.errors import not_found
from gateway import he_frames, latency
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.models import CERTIFICATE_EXAMPLE, MODEL_EXAMPLE, Model, RegistryCertificate, ScoreAnswer
from gateway.deps import Audit, Ctx, CurrentPrincipal, Heavy
from gateway.services import certificates, scoring
from gateway.services.idempotency import Idempotent
from gateway.services.jobs import actor_of
from gateway.services.scoring import ScoreBody

router = APIRouter(tags=["models"])


@router.get("/models", name="model.list", response_model=list[Model], **OUT,
            **doc("Every released model's card and certificate", response_example=[MODEL_EXAMPLE]))
def list_models(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, Any]]:
    """Every released model's card and certificate (never the weights)."""
    return [m.public() for m in model_registry.list_models(ctx.engine)]


@router.get("/models/{model_id}", name="model.show", response_model=Model, **OUT,
            **doc("One model's card, certificate and scoring terms", ErrorCode.NOT_FOUND_OR_FORBIDDEN))
def show(model_id: str, _: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """One model: features and encoding, the DP guarantee, metrics, source datasets, certificate, scoring terms."""
    m = model_registry.get_model(ctx.engine, model_id)
    if m is None:
        raise not_found("model")
    ev.agreement_id = m.agreement_id
    ev.details["model_id"] = m.id
    return m.public()


# --- certificates of products and released outputs ------------------------------------------------------------


@router.get("/certificates", name="certificate.list", response_model=list[RegistryCertificate], **OUT,
            tags=["certificates"],
            **doc("An agreement's certificates: its released outputs and the products over its datasets",
                  ErrorCode.NOT_FOUND_OR_FORBIDDEN, response_example=[CERTIFICATE_EXAMPLE]))
def list_certificates(agreement_id: str, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> list[dict[str, Any]]:
    """For the agreement's parties, the data authority and regulators (``NOT_FOUND_OR_FORBIDDEN`` otherwise)."""
    ev.agreement_id = agreement_id
    return certificates.list_for_agreement(ctx, actor_of(p), agreement_id)


@router.get("/certificates/{certificate_id}", name="certificate.show", response_model=RegistryCertificate, **OUT,
            tags=["certificates"],
            **doc("Verify a certificate: valid, revoked or expired, what it covers, its sources",
                  ErrorCode.NOT_FOUND_OR_FORBIDDEN, response_example=CERTIFICATE_EXAMPLE))
def show_certificate(certificate_id: str, _: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """A product's or a released output's certificate as the registry states it now."""
    out = certificates.show(ctx, certificate_id)
    ev.agreement_id = out["agreement_id"]
    ev.details["certificate_id"] = out["id"]
    return out


# --- encrypted scoring -----------------------------------------------------------------------------------------


_SCORE_EXAMPLE = {"context": "<base64 public CKKS context>", "ciphertexts": ["<base64 Enc(x)>"], "layout": "columns",
                  "output": "decision", "cutoff": "<base64 Enc(t)>", "agreement_id": "agr_1b61737f85dc4169584d"}
_SCORE_FIELDS = {"list_fields": ("ciphertexts",), "blob_fields": ("context", "cutoff")}


@router.post("/models/{model_id}/score", name="model.score", response_model=ScoreAnswer, **OUT,
             **doc("Score encrypted applicants: decisions, or logits where granted (bank)",
                   ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                   ErrorCode.QUOTA_EXCEEDED, ErrorCode.CIPHERTEXT_INVALID, ErrorCode.UNAVAILABLE,
                   media={"application/json": {},
                          he_frames.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                   model=ScoreAnswer,
                   openapi_extra=he_frames.request_body_doc(
                       ScoreBody, _SCORE_EXAMPLE, "Blobs: context, then each of ciphertexts, then cutoff "
                       "(decision only). The answer comes as a frame (blobs: ciphertexts) when Accept names "
                       "this type.")))
async def score(model_id: str, request: Request, p: Heavy, ctx: Ctx, ev: Audit, _idem: Idempotent) -> Any:
    """Encrypted scoring: decisions (default) or granted logits under the bank's key; the weights never leave.
    The body is JSON (base64 ciphertexts) or a binary frame (`gateway.he_frames`), the answer likewise."""
    async with latency.padded(ctx.settings.latency_bucket_ms):
        body = await he_frames.read_body(request, ScoreBody, **_SCORE_FIELDS)
        ev.agreement_id = body.agreement_id
        out: dict[str, Any] = await run_in_threadpool(scoring.score, ctx, p, model_id, body, ev)
        if he_frames.wants_binary(request):
            return he_frames.binary_answer(out, list_fields=("ciphertexts",))
        return out
