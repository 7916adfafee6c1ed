"""Verification products (docs/api.md, "Verifications", 核验): owners define yes/no questions, banks ask them.

``POST /verifications`` (owner) vets the predicate (`sandbox.verify`) and records the product
(`catalog.products`). ``POST /verifications/{name}/check`` (the bank under an active agreement with job kind
``verify``) answers ``{"result": true|false, "receipt"}``: authorized and metered by `policies.authorize`
(calls per day, checks per subject per day, distinct parameter values per subject per window), evaluated by one
canonical statement on the dataset's locked worker, audited with the keyed subject hash (never the subject),
the parameters' digest and the receipt's digest as the output. An unknown subject answers ``false`` through
the same statement, the same metering and the same receipt shape; every answer and refusal — including a body
the schema refuses — is padded to the latency bucket (``VEILBOX_LATENCY_BUCKET_MS``,
`gateway.routes._common.PaddedRoute`).

``POST /verifications/{name}/check-encrypted`` answers a batch of subjects against thresholds the service never
sees: the bank sends a BFV public context and ``Enc(t)`` (one subject per slot) and gets
``Enc(r·(x − t) + r')`` (`mpc.he.evaluate_masked_sign`). Only products of the form ``column >= :param`` /
``column <= :param`` qualify. A batch names each subject once (after canonicalisation: ``7`` and ``"7"`` are one
subject). Every subject is metered (one check, and one *new* parameter value — a fresh nonce per request, since
the threshold is hidden and one ciphertext could be replayed with the subjects in other slots: the
distinct-parameter cap bounds how many encrypted checks a subject can undergo per window) in one transaction, all
or nothing.

Canonical keys (`sandbox.verify.canonical_subject`, `canonical_params`): the subject's one spelling is what is
matched, metered, hashed and signed; the distinct-value cap, the audit entry's and the receipt's
``params_digest`` are the digest of the product and its parameters' canonical values
(`gateway.services.verification.question_digest`).
Re-spellings are ``INVALID_REQUEST``, audited, padded, and cost nothing. Products declared with
``hide_membership`` are refused (at definition and at every check) when some admissible parameter makes the
predicate true for every declared row (`sandbox.verify_membership`).

Receipts are ``vbr1.<payload>.<signature>`` (base64url): the payload names the product, agreement, hashed
subject(s), digests of the parameters, consent reference and ciphertexts, the result (plain checks) and the
time; the signature is the service key's (`GET /audit/public-key`: Ed25519 or SM2, the home's suite) over
``veilbox-receipt|v1|`` + payload (`gateway.services.receipts`). `veilbox.bank.verify_receipt` checks one offline.

The orchestration is `gateway.services.verification` (shared with the console); this module parses, calls it
and shapes the answer. ``check-encrypted`` also takes and gives its ciphertexts as raw bytes in a binary frame
(`gateway.he_frames`; docs/api.md, "Binary bodies for ciphertexts").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool

from catalog.products import ProductSpec
from gateway import he_frames
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.verifications import CheckAnswer, EncryptedCheckAnswer, Product
from gateway.deps import Audit, Ctx, CurrentPrincipal, Heavy, Owner
from gateway.routes._common import PaddedRoute
from gateway.services import verification
from gateway.services.idempotency import Idempotent
from gateway.services.verification import CheckBody, EncryptedCheckBody

router = APIRouter(tags=["verification"])

#: The check endpoints: padded as a whole (included into `router` at the end of the module).
checks = APIRouter(tags=["verification"], route_class=PaddedRoute)
#: What a check can be refused with (the product, the agreement's decision, its quotas).
_CHECK_ERRORS = (ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE,
                 ErrorCode.QUOTA_EXCEEDED, ErrorCode.QUERY_REJECTED,
                 ErrorCode.CONSENT_REQUIRED, ErrorCode.CONSENT_INVALID)


# --- products --------------------------------------------------------------------------------------------------


@router.post("/verifications", name="verify.define", status_code=status.HTTP_201_CREATED, response_model=Product,
             **OUT, **doc("Define a verification product over one of your datasets (owner)", ErrorCode.POLICY_DENIED,
                          ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.ALREADY_EXISTS, ErrorCode.QUERY_REJECTED,
                          status=201, request_example={
                              "name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                              "predicate": "monthly_income >= :threshold", "params": {"threshold": "number"},
                              "description": "monthly income at least the threshold"}))
def define(spec: ProductSpec, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Define a verification product over one of your datasets (the predicate is vetted like SQL)."""
    ev.dataset = spec.dataset
    ev.details["product"] = spec.name
    return verification.define_product(ctx, owner, spec)


@router.get("/verifications", name="verify.list", response_model=list[Product], **OUT,
            **doc("Every verification product: its question, never any answer"))
def list_products(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, Any]]:
    """Every product: its question (predicate template and parameter types), never any answer."""
    return verification.list_products(ctx)


@router.get("/verifications/{name}", name="verify.show", response_model=Product, **OUT,
            **doc("One verification product", ErrorCode.NOT_FOUND_OR_FORBIDDEN, ErrorCode.QUERY_REJECTED,
                  ErrorCode.POLICY_DENIED))
def show(name: str, _: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    return verification.show_product(ctx, name, ev)


# --- checks ----------------------------------------------------------------------------------------------------


@checks.post("/verifications/{name}/check", name="verify.check", response_model=CheckAnswer, **OUT,
             **doc("Ask the product's question about one subject (bank)", *_CHECK_ERRORS,
                   request_example={"agreement_id": "agr_1b61737f85dc4169584d", "subject": "P0000001",
                                    "params": {"threshold": 8000}, "consent_ref": "consent-2026-0001",
                                    "purpose": "credit_risk"}))
async def check(name: str, body: CheckBody, p: CurrentPrincipal, ctx: Ctx, ev: Audit,
                _idem: Idempotent) -> dict[str, Any]:
    """Ask the product's question about one subject: ``{"result": true|false, "receipt"}``. An unknown
    subject answers ``false``, indistinguishably; answers and refusals are padded to the latency bucket."""
    ev.agreement_id = body.agreement_id
    out: dict[str, Any] = await run_in_threadpool(verification.check_answer, ctx, p, name, body, ev)
    return out


_ENCRYPTED_EXAMPLE = {"agreement_id": "agr_1b61737f85dc4169584d", "subjects": ["P0000001", "P0000002"],
                      "context": "<base64 public BFV context>", "ciphertext": "<base64 Enc(t)>",
                      "consent_ref": "consent-2026-0002"}


@checks.post("/verifications/{name}/check-encrypted", name="verify.check_encrypted",
             response_model=EncryptedCheckAnswer, **OUT,
             **doc("Threshold checks for many subjects under the bank's key (bank)", *_CHECK_ERRORS,
                   ErrorCode.CIPHERTEXT_INVALID,
                   media={"application/json": {}, he_frames.MEDIA_TYPE: {"schema": {"type": "string",
                                                                                     "format": "binary"}}},
                   model=EncryptedCheckAnswer,
                   openapi_extra=he_frames.request_body_doc(
                       EncryptedCheckBody, _ENCRYPTED_EXAMPLE, "Blobs: context, then ciphertext. The answer "
                       "comes as a frame (header: receipt; blob: ciphertext) when Accept names this type.")))
async def check_encrypted(name: str, request: Request, p: Heavy, ctx: Ctx, ev: Audit, _idem: Idempotent) -> Any:
    """Threshold checks for many subjects under the bank's BFV key: ``{"ciphertext"}`` decrypts, per slot, to
    a value that is positive exactly when the subject passes (unknown subjects: negative). The body is JSON
    (base64) or a binary frame (`gateway.he_frames`), the answer likewise."""
    body = await he_frames.read_body(request, EncryptedCheckBody, blob_fields=("context", "ciphertext"))
    ev.agreement_id = body.agreement_id
    out: dict[str, Any] = await run_in_threadpool(verification.check_encrypted, ctx, p, name, body, ev)
    if he_frames.wants_binary(request):
        return he_frames.binary_answer(out, blob_fields=("ciphertext",))
    return out


router.include_router(checks)
