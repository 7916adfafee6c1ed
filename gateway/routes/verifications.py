"""Verification products (docs/api.md, "Verifications", 核验): owners define yes/no questions, banks ask them.

``POST /verifications`` (owner) vets the predicate (`sandbox.verify`) and records the product
(`catalog.products`). ``POST /verifications/{name}/check`` (the bank under an active agreement with job kind
``verify``) answers ``{"result": true|false, "receipt"}``: authorized and metered by `policies.authorize`
(calls per day, checks per subject per day, distinct parameter values per subject per window), evaluated by one
canonical statement on the dataset's locked worker, audited with the keyed subject hash (never the subject),
the parameters' digest and the receipt's digest as the output. An unknown subject answers ``false`` through
the same statement, the same metering and the same receipt shape; every answer and refusal — including a body
the schema refuses — is padded to the latency bucket (``VEILBOX_LATENCY_BUCKET_MS``, `PaddedRoute`).

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
``params_digest`` are the digest of the product and its parameters' canonical values (`question_digest`).
Re-spellings are ``INVALID_REQUEST``, audited, padded, and cost nothing. Products declared with
``hide_membership`` are refused (at definition and at every check) when some admissible parameter makes the
predicate true for every declared row (`sandbox.verify_membership`).

Receipts are ``vbr1.<payload>.<signature>`` (base64url): the payload names the product, agreement, hashed
subject(s), digests of the parameters, consent reference and ciphertexts, the result (plain checks) and the
time; the signature is Ed25519 by the service key (`GET /audit/public-key`) over ``veilbox-receipt|v1|`` +
payload. `veilbox.bank.verify_receipt` checks one offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

import policies
from catalog import products, registry
from catalog.errors import INVALID_REQUEST, DomainError, invalid, not_found
from catalog.products import Product, ProductSpec
from catalog.registry import Dataset
from gateway import latency
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.deps import Audit, Ctx, CurrentPrincipal, Owner
from gateway.identities import Principal
from gateway.services import jobs as jobflow
from gateway.services.agreements import note_expiry
from gateway.services.jobs import actor_of
from mpc.he import SignBounds, evaluate_masked_sign_with, load_sign_context
from policies import Action
from policies import quotas as policy_quotas
from policies.decision import CALL, meters_for
from sandbox.verify import (
    VettedPredicate,
    bind_canonical,
    canonical_params,
    canonical_subject,
    canonical_subjects,
    check_subject,
    sign_box,
    threshold_values,
    vet_predicate,
)
from sandbox.verify_membership import prove_membership_hidden

router = APIRouter(tags=["verification"])


class PaddedRoute(APIRoute):
    """A route whose every outcome — answer, refusal, malformed body (`RequestValidationError` is raised inside
    the route handler), authentication failure — leaves on a latency-bucket boundary (`gateway.latency`)."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def padded_handler(request: Request) -> Response:
            async with latency.padded(request.app.state.ctx.settings.latency_bucket_ms):
                response: Awaitable[Response] = handler(request)
                return await response

        return padded_handler


#: The check endpoints: padded as a whole (included into `router` at the end of the module).
checks = APIRouter(tags=["verification"], route_class=PaddedRoute)

#: Subjects per encrypted check (each is metered in the request's one transaction).
MAX_ENCRYPTED_SUBJECTS = 1024
RECEIPT_PREFIX = b"veilbox-receipt|v1|"
#: A subject as sent: a string, or a JSON integer for integer subject columns. Its one canonical spelling
#: (`sandbox.verify.canonical_subject`) is checked against the product's subject column inside the padded
#: handler, so a malformed subject is refused like any other answer (INVALID_REQUEST, audited, nothing metered).
Subject = Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt
SubjectField = Field(description="the subject's identifier in the product's subject column: exactly as stored "
                                 "for string columns; a JSON integer or its canonical decimal text (7 or \"7\", "
                                 "never \"007\") for integer columns")
ConsentField = Field(min_length=1, max_length=200, description="the bank's reference to the subject's consent "
                                                               "(recorded as a digest)")


class CheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    subject: Subject = SubjectField
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"threshold": 8000}])
    consent_ref: str = ConsentField
    purpose: str | None = Field(None, max_length=64, description="one of the agreement's purposes")


class EncryptedCheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    subjects: list[Subject] = Field(min_length=1, max_length=MAX_ENCRYPTED_SUBJECTS,
                                    description="one subject per slot of the ciphertext, in slot order, each "
                                                "named once (canonical spellings as for a plain check)")
    context: str = Field(description="base64 public BFV TenSEAL context (no secret key)")
    ciphertext: str = Field(description="base64 Enc(t), one threshold per subject (Enc(-t) for `<=` products)")
    consent_ref: str = ConsentField
    purpose: str | None = Field(None, max_length=64)


# --- helpers -------------------------------------------------------------------------------------------------


def _sha256(data: str | bytes) -> str:
    return "sha256:" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue_receipt(ctx: AppContext, claims: dict[str, Any]) -> str:
    """A signed, fixed-shape statement of what was answered (see the module docstring)."""
    body = {"v": 1, "key_id": ctx.keys.key_id,
            "issued_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "nonce": secrets.token_hex(16), **claims}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    signature = ctx.keys.signing.sign(RECEIPT_PREFIX + payload)
    return f"vbr1.{_b64url(payload)}.{_b64url(signature)}"


def _product(ctx: AppContext, name: str, ev: AuditEvent) -> tuple[Product, Dataset, VettedPredicate]:
    """The product, its dataset and its predicate vetted against the declaration as it stands now (and, for
    ``hide_membership`` products, proved again not to be a membership test: declarations can change)."""
    product = products.get_product(ctx.engine, name)
    if product is None:
        raise not_found("verification product")
    ev.dataset = product.dataset
    ev.details["product"] = product.name
    ds = registry.get(ctx.engine, product.dataset)
    if ds is None:
        raise not_found("verification product")
    vetted = vet_predicate(product.predicate, product.params, ds, product.subject_column)
    if product.hide_membership:
        prove_membership_hidden(vetted, product.predicate, ds)
    return product, ds, vetted


def question_digest(product: Product, canonical: dict[str, Any]) -> str:
    """The digest of the question asked — the product and its parameters' canonical values — that the
    distinct-value cap counts, the audit entry records and the receipt signs (``params_digest``). One value
    however it is spelt; another product's question is another value even with equal parameters."""
    return policies.params_digest({"product": product.name, "params": canonical})


def _view(product: Product, vetted: VettedPredicate) -> dict[str, Any]:
    return {**product.public(), **vetted.public()}


def _authorize(ctx: AppContext, p: Principal, agreement_id: str, ds: Dataset, vetted: VettedPredicate,
               consent_ref: str, purpose: str | None, subject_hash: str, params: dict[str, Any]) -> None:
    note_expiry(ctx, agreement_id)
    policies.authorize(ctx.engine, actor_of(p), Action.VERIFY_CHECK, agreement_id, datasets=[ds.name],
                       columns={ds.name: sorted(vetted.columns)}, purpose=purpose, consent_ref=consent_ref,
                       subject_hash=subject_hash, params=params)


# --- products --------------------------------------------------------------------------------------------------


def _define(ctx: AppContext, owner: Principal, spec: ProductSpec) -> dict[str, Any]:
    ds = registry.get(ctx.engine, spec.dataset)
    if ds is None or ds.owner != owner.name:
        raise not_found("dataset")
    if spec.subject_column not in ds.columns:
        raise invalid("the subject column is not a column of the dataset",
                      [{"field": "subject_column", "problem": "unknown column"}])
    vetted = vet_predicate(spec.predicate, spec.params, ds, spec.subject_column)
    if spec.hide_membership:
        prove_membership_hidden(vetted, spec.predicate, ds)
    return _view(products.define_product(ctx.engine, owner.name, spec), vetted)


@router.post("/verifications", name="verify.define", status_code=status.HTTP_201_CREATED)
def define(spec: ProductSpec, owner: Owner, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Define a verification product over one of your datasets (the predicate is vetted like SQL)."""
    ev.dataset = spec.dataset
    ev.details["product"] = spec.name
    return _define(ctx, owner, spec)


@router.get("/verifications", name="verify.list")
def list_products(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, Any]]:
    """Every product: its question (predicate template and parameter types), never any answer."""
    out = []
    for product in products.list_products(ctx.engine):
        ds = registry.get(ctx.engine, product.dataset)
        try:
            vetted = vet_predicate(product.predicate, product.params, ds, product.subject_column) if ds else None
        except DomainError:
            vetted = None
        out.append(_view(product, vetted) if vetted else {**product.public(), "available": False})
    return out


@router.get("/verifications/{name}", name="verify.show")
def show(name: str, _: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    product, _ds, vetted = _product(ctx, name, ev)
    return _view(product, vetted)


# --- checks ----------------------------------------------------------------------------------------------------


def check_answer(ctx: AppContext, p: Principal, name: str, body: CheckBody, ev: AuditEvent) -> dict[str, Any]:
    """One plain check (API and console): vet, canonicalise, authorize and meter, run on the locked worker, sign
    a receipt. The subject's canonical spelling is what is matched, metered, hashed, audited and signed; a
    malformed subject or parameter is refused before anything is metered."""
    consent = _sha256(body.consent_ref)
    ev.details.update(consent_digest=consent)
    product, ds, vetted = _product(ctx, name, ev)
    subject = canonical_subject(vetted.subject_kind, body.subject)  # malformed subjects cost nothing
    subject_hash = ctx.keys.subject_hash(subject)
    ev.subject_hash = subject_hash
    canonical = canonical_params(vetted, body.params)  # malformed parameters cost nothing
    params_digest = question_digest(product, canonical)
    ev.details.update(params_digest=params_digest)
    _authorize(ctx, p, body.agreement_id, ds, vetted, body.consent_ref, body.purpose, subject_hash,
               {"product": product.name, "params": canonical})
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    result = check_subject(worker, vetted, subject, bind_canonical(vetted, canonical))
    receipt = issue_receipt(ctx, {
        "kind": "verification", "product": product.name, "agreement_id": body.agreement_id,
        "subject_hash": subject_hash, "params_digest": params_digest, "consent_digest": consent,
        "dataset_fingerprint": ds.fingerprint, "result": result})
    ev.output_digest = _sha256(receipt)
    return {"result": result, "receipt": receipt}


@checks.post("/verifications/{name}/check", name="verify.check")
async def check(name: str, body: CheckBody, p: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Ask the product's question about one subject: ``{"result": true|false, "receipt"}``. An unknown
    subject answers ``false``, indistinguishably; answers and refusals are padded to the latency bucket."""
    ev.agreement_id = body.agreement_id
    out: dict[str, Any] = await run_in_threadpool(check_answer, ctx, p, name, body, ev)
    return out


def _meter_subjects(ctx: AppContext, p: Principal, agreement_id: str, hashes: list[str], param_hash: str) -> None:
    """Meter every subject of an encrypted check in one transaction (all or nothing)."""
    agreement = policies.load_agreement(ctx.engine, agreement_id)
    if agreement is None:  # pragma: no cover - the decision just found it
        raise not_found("agreement")
    meters = meters_for(Action.VERIFY_CHECK)
    now = dt.datetime.now(dt.UTC)
    i = 0
    try:
        with ctx.engine.begin() as conn:
            for i, h in enumerate(hashes):
                subject_meters = meters if i == 0 else tuple(m for m in meters if m != CALL)
                policy_quotas.consume_in(conn, agreement, p.name, subject_meters, now, h, param_hash)
    except DomainError as e:
        e.details = [*e.details, {"subject_index": i}]
        raise


def _check_encrypted(ctx: AppContext, p: Principal, name: str, body: EncryptedCheckBody,
                     ev: AuditEvent) -> dict[str, Any]:
    consent = _sha256(body.consent_ref)
    request_digest = _sha256(body.context.encode() + b"|" + body.ciphertext.encode())
    ev.details.update(subjects=len(body.subjects), consent_digest=consent, request_digest=request_digest)
    product, ds, vetted = _product(ctx, name, ev)
    threshold = vetted.threshold
    if threshold is None:
        raise DomainError(INVALID_REQUEST, "this product has no encrypted form: only a single threshold "
                                           "`column >= :param` or `column <= :param` qualifies")
    # Canonical spellings, each subject once: a repeat (7 and "7") would be a second threshold for one subject
    # under one count. Malformed or repeated subjects cost nothing.
    subjects = canonical_subjects(vetted.subject_kind, body.subjects)
    hashes = [ctx.keys.subject_hash(s) for s in subjects]
    ev.details.update(subject_hashes=hashes)
    # The thresholds are hidden, and one ciphertext can be sent again with the subjects in other slots: every
    # slot of every encrypted check is a new parameter value for its subject (a fresh nonce), never a repeat.
    params = {"product": product.name, "encrypted_check": secrets.token_hex(16)}
    note_expiry(ctx, body.agreement_id)
    policies.check(ctx.engine, actor_of(p), Action.VERIFY_CHECK, body.agreement_id, datasets=[ds.name],
                   columns={ds.name: sorted(vetted.columns)}, purpose=body.purpose, consent_ref=body.consent_ref,
                   subject_hash=hashes[0], params=params).raise_if_denied()
    bounds = SignBounds(*sign_box(threshold))
    # Check, then charge: validate the context and the ciphertext (a dry evaluation on placeholder values, no
    # data read, result discarded) before any subject's allowance is used.
    key = (p.name, "sign", repr(sign_box(threshold)), _sha256(body.context))
    (public, plan), lock = ctx.caches.sign_contexts.get(key, lambda: load_sign_context(body.context, bounds))
    with lock:
        evaluate_masked_sign_with(public, plan, body.ciphertext, [bounds.value_min] * len(hashes), bounds)
    _meter_subjects(ctx, p, body.agreement_id, hashes, policies.params_digest(params))
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    values, _ = threshold_values(worker, vetted, subjects)
    with lock:
        out = evaluate_masked_sign_with(public, plan, body.ciphertext, values, bounds)
    receipt = issue_receipt(ctx, {
        "kind": "verification.encrypted", "product": product.name, "agreement_id": body.agreement_id,
        "subjects": len(hashes), "subject_hashes_digest": _sha256("\n".join(hashes)), "consent_digest": consent,
        "request_digest": request_digest, "output_digest": _sha256(out),
        "dataset_fingerprint": ds.fingerprint})
    ev.output_digest = _sha256(out)
    return {"ciphertext": out, "receipt": receipt}


@checks.post("/verifications/{name}/check-encrypted", name="verify.check_encrypted")
async def check_encrypted(name: str, body: EncryptedCheckBody, p: CurrentPrincipal, ctx: Ctx,
                          ev: Audit) -> dict[str, Any]:
    """Threshold checks for many subjects under the bank's BFV key: ``{"ciphertext"}`` decrypts, per slot, to
    a value that is positive exactly when the subject passes (unknown subjects: negative)."""
    ev.agreement_id = body.agreement_id
    out: dict[str, Any] = await run_in_threadpool(_check_encrypted, ctx, p, name, body, ev)
    return out


router.include_router(checks)
