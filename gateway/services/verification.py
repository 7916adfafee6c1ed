"""Verification products (核验): defining them, reading them, and answering their plain and encrypted checks.

Shared by the API (`gateway.routes.verifications`), the console's check page and the anonymous checks
(`gateway.services.psi`). A check is vetted against the declaration as it stands now (`product_for_check`),
canonicalised (`sandbox.verify.canonical_subject`, `canonical_params`: one spelling is matched, metered, hashed
and signed; malformed input costs nothing), decided (`policies.permit`: policy and quotas, from a snapshot of the
caller's own counters), evaluated by one canonical statement on the dataset's locked worker, signed
(`gateway.services.receipts`), and metered with the request's audit entry in one transaction (`_answered`: both
or neither, `gateway.journal`): the verdict leaves only once that commits; a concurrent call that took the last
unit meanwhile makes it ``QUOTA_EXCEEDED`` (counters only, the verdict discarded). The caller's `AuditEvent`
receives the keyed subject hash (never the subject), the question's digest (`question_digest`) and the
receipt's digest as the output.

Certificates (`gateway.services.certificates.for_check`): after the policy decision and before anything is read,
a check names the product's certificate under its agreement; the first check under an agreement issues it in the
transaction that meters it with its entry. The receipt and the answer carry its id (``certificate_id``).

Encrypted checks (`check_encrypted`): the bank's BFV context and ``Enc(t)`` in, ``Enc(r·(x − t) + r')`` out
(`mpc.he.evaluate_masked_sign_with`); the context and ciphertext are validated by a dry evaluation before any
data is read, the lookup and evaluation (which succeed for any subject set) run, then every subject is metered
with the request's entry in one transaction (all or nothing) with a fresh parameter value each (the threshold is
hidden, so one ciphertext replayed with the subjects in other slots is a new question).

Consents (`gateway.services.consent.require_for`): where the home enforces the consent registry (同意登记), a
check on a personal dataset names a registered consent id per subject (the plain check's ``consent_ref``, the
encrypted check's ``consent_ids``), checked after the policy decision and before anything is read (docs/consent.md).

Objections (`refuse_if_objected`): after the policy decision and before anything is read or metered, a check
naming a subject its owner's open objection suspends is refused (``POLICY_DENIED``, reason ``subject.unavailable``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import Connection

import policies
from catalog import products, registry
from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError, invalid, not_found
from catalog.fingerprint import HashAlg
from catalog.products import Product, ProductSpec
from catalog.registry import Dataset
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.journal import Journal, request_entry
from gateway.services import certificates
from gateway.services import consent as consent_registry
from gateway.services import jobs as jobflow
from gateway.services.agreements import note_expiry
from gateway.services.jobs import actor_of
from gateway.services.receipts import digest, issue_receipt
from mpc.he import SignBounds, evaluate_masked_sign_with, load_sign_context
from policies import Action, complaints
from policies import quotas as policy_quotas
from policies.decision import meters_for
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

__all__ = ["MAX_ENCRYPTED_SUBJECTS", "CheckBody", "EncryptedCheckBody", "check_answer", "check_encrypted",
           "define_product", "list_products", "product_for_check", "question_digest", "refuse_if_objected",
           "show_product"]

#: Subjects per encrypted check (each is metered in the request's one transaction).
MAX_ENCRYPTED_SUBJECTS = 1024
#: A subject as sent: a string, or a JSON integer for integer subject columns. Its one canonical spelling
#: (`sandbox.verify.canonical_subject`) is checked against the product's subject column inside the padded
#: handler, so a malformed subject is refused like any other answer (INVALID_REQUEST, audited, nothing metered).
Subject = Annotated[StrictStr, Field(min_length=1, max_length=200)] | StrictInt
SubjectField = Field(description="the subject's identifier in the product's subject column: exactly as stored "
                                 "for string columns; a JSON integer or its canonical decimal text (7 or \"7\", "
                                 "never \"007\") for integer columns")
ConsentField = Field(min_length=1, max_length=200, description="the bank's reference to the subject's consent "
                                                               "(recorded as a digest)")


class CheckBody(BaseModel):  # a plain check (``POST /verifications/{name}/check``, the console's check form)
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    subject: Subject = SubjectField
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"threshold": 8000}])
    consent_ref: str = ConsentField
    purpose: str | None = Field(None, max_length=64, description="one of the agreement's purposes")


class EncryptedCheckBody(BaseModel):  # ``POST /verifications/{name}/check-encrypted``
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    subjects: list[Subject] = Field(min_length=1, max_length=MAX_ENCRYPTED_SUBJECTS,
                                    description="one subject per slot of the ciphertext, in slot order, each "
                                                "named once (canonical spellings as for a plain check)")
    context: str = Field(description="base64 public BFV TenSEAL context (no secret key)")
    ciphertext: str = Field(description="base64 Enc(t), one threshold per subject (Enc(-t) for `<=` products)")
    consent_ref: str = ConsentField
    consent_ids: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=MAX_ENCRYPTED_SUBJECTS,
        description="registered consent ids (同意登记), one per subject in slot order, where the home enforces the "
                    "consent registry (one subject: `consent_ref` may be its id instead)")
    purpose: str | None = Field(None, max_length=64)


def product_for_check(ctx: AppContext, name: str, ev: AuditEvent,
                      certified: bool = True) -> tuple[Product, Dataset, VettedPredicate]:
    """The product, its dataset and its predicate vetted against the declaration as it stands now (and, for
    ``hide_membership`` products, proved again not to be a membership test: declarations can change). With
    ``certified`` (every check), a product whose certificate is revoked or expired is refused
    (`gateway.services.certificates.refuse_if_uncertified`)."""
    product = products.get_product(ctx.engine, name)
    if product is None:
        raise not_found("verification product")
    ev.dataset = product.dataset
    ev.details["product"] = product.name
    if certified:
        certificates.refuse_if_uncertified(ctx, product)
    ds = registry.get(ctx.engine, product.dataset)
    if ds is None:
        raise not_found("verification product")
    vetted = vet_predicate(product.predicate, product.params, ds, product.subject_column)
    if product.hide_membership:
        prove_membership_hidden(vetted, product.predicate, ds)
    return product, ds, vetted


def question_digest(product: Product, canonical: dict[str, Any], hash_alg: HashAlg = "sha256") -> str:
    """The digest of the question asked — the product and its parameters' canonical values — that the
    distinct-value cap counts, the audit entry records and the receipt signs (``params_digest``). One value
    however it is spelt; another product's question is another value even with equal parameters. ``hash_alg`` is
    the home suite's hash (``sha256:`` in ``intl``, ``sm3:`` in ``sm``)."""
    return policies.params_digest({"product": product.name, "params": canonical}, hash_alg)


def _view(product: Product, vetted: VettedPredicate) -> dict[str, Any]:
    return {**product.public(), **vetted.public()}


def _permit(ctx: AppContext, p: Principal, agreement_id: str, ds: Dataset, vetted: VettedPredicate,
            consent_ref: str, purpose: str | None, subject_hash: str, params: dict[str, Any]) -> policies.Permit:
    """Decide a plain check, metering nothing yet (`_answered` meters it with its entry). An allowed check's
    agreement is in force, so only a refused one can be the first touch of an expired agreement: its expiry is
    recorded then (`note_expiry`), before the refusal leaves. The allowed path — every answered check — thus
    writes no expiry transaction (docs/performance.md)."""
    try:
        return policies.permit(ctx.engine, actor_of(p), Action.VERIFY_CHECK, agreement_id, datasets=[ds.name],
                               columns={ds.name: sorted(vetted.columns)}, purpose=purpose, consent_ref=consent_ref,
                               subject_hash=subject_hash, params=params, hash_alg=ctx.settings.hash_alg)
    except DomainError:
        note_expiry(ctx, agreement_id)
        raise


def refuse_if_objected(ctx: AppContext, agreement_id: str, subject_hashes: list[str]) -> None:
    """Refuse a check, after its policy decision and before anything is read or metered, when one of its subjects
    is suspended by an objection the agreement's owner filed on the person's behalf (`policies.complaints`). The
    refusal is the plain ``POLICY_DENIED`` with the reason ``subject.unavailable``: it names no complaint, filer,
    date or reason, so the caller learns only that this subject cannot be checked now (docs/mechanisms/
    verification.md, "Objections")."""
    if complaints.subject_suspended(ctx.engine, agreement_id, subject_hashes):
        raise DomainError(POLICY_DENIED, "this subject cannot be checked under this agreement at present",
                          [{"reason": "subject.unavailable"}])


def _after(first: Journal, journal: Journal) -> Journal:
    """``first`` (the product's certificate under the agreement, on its first use), then ``journal`` (the
    request's entry): both in the meters' transaction."""

    def both(conn: Connection) -> None:
        first(conn)
        journal(conn)

    return both


def _answered(ctx: AppContext, ev: AuditEvent, output_digest: str, meter: Callable[[Journal], None]) -> None:
    """Meter an answer computed but not yet sent, with the request's entry (stating ``output_digest``) in the
    meters' transaction: both or neither (`gateway.journal`). If the meters are used up meanwhile (a concurrent
    call took the last unit: ``QUOTA_EXCEEDED``) or the store fails, the answer is discarded and the entry the
    middleware then writes states the refusal and no output."""

    def answer(_conn: Connection, entry: AuditEvent) -> bool:
        entry.output_digest = output_digest
        return True

    meter(request_entry(ctx.audit, ev, answer))
    ev.output_digest = output_digest


# --- products --------------------------------------------------------------------------------------------------


def define_product(ctx: AppContext, owner: Principal, spec: ProductSpec) -> dict[str, Any]:
    """Record a product over one of ``owner``'s datasets, its predicate vetted like SQL (and, with
    ``hide_membership``, proved not to be a membership test)."""
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


def list_products(ctx: AppContext) -> list[dict[str, Any]]:
    """Every product: its question (predicate template and parameter types), never any answer; a product whose
    declaration no longer vets is listed as unavailable."""
    out = []
    for product in products.list_products(ctx.engine):
        ds = registry.get(ctx.engine, product.dataset)
        try:
            vetted = vet_predicate(product.predicate, product.params, ds, product.subject_column) if ds else None
        except DomainError:
            vetted = None
        out.append(_view(product, vetted) if vetted else {**product.public(), "available": False})
    return out


def show_product(ctx: AppContext, name: str, ev: AuditEvent) -> dict[str, Any]:
    product, _ds, vetted = product_for_check(ctx, name, ev, certified=False)
    return _view(product, vetted)


# --- checks ----------------------------------------------------------------------------------------------------


def check_answer(ctx: AppContext, p: Principal, name: str, body: CheckBody, ev: AuditEvent) -> dict[str, Any]:
    """One plain check (API and console): vet, canonicalise, authorize and meter, run on the locked worker, sign
    a receipt. The subject's canonical spelling is what is matched, metered, hashed, audited and signed; a
    malformed subject or parameter is refused before anything is metered."""
    consent = digest(ctx, body.consent_ref)
    ev.details.update(consent_digest=consent)
    product, ds, vetted = product_for_check(ctx, name, ev)
    subject = canonical_subject(vetted.subject_kind, body.subject)  # malformed subjects cost nothing
    subject_hash = ctx.keys.subject_hash(subject)
    ev.subject_hash = subject_hash
    canonical = canonical_params(vetted, body.params)  # malformed parameters cost nothing
    params_digest = question_digest(product, canonical, ctx.settings.hash_alg)
    ev.details.update(params_digest=params_digest)
    allowed = _permit(ctx, p, body.agreement_id, ds, vetted, body.consent_ref, body.purpose, subject_hash,
                      {"product": product.name, "params": canonical})
    consent_registry.require_for(ctx, p, ds, product.name, [body.consent_ref], ev, subject_hashes=[subject_hash])
    refuse_if_objected(ctx, body.agreement_id, [subject_hash])
    # The product's certificate under this agreement: named before anything is read, whatever the subject.
    cert_id, issue_cert = certificates.for_check(ctx, product, body.agreement_id)
    ev.details.update(certificate_id=cert_id)
    # Decided (quotas from the snapshot) before the statement runs; the verdict leaves only once its meters
    # commit with the request's entry (`_answered`).
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    result = check_subject(worker, vetted, subject, bind_canonical(vetted, canonical))
    receipt = issue_receipt(ctx, {
        "kind": "verification", "product": product.name, "agreement_id": body.agreement_id,
        "subject_hash": subject_hash, "params_digest": params_digest, "consent_digest": consent,
        "dataset_fingerprint": ds.fingerprint, "certificate_id": cert_id, "result": result})
    _answered(ctx, ev, digest(ctx, receipt),
              lambda journal: allowed.consume(ctx.engine, _after(issue_cert, journal)))
    return {"result": result, "receipt": receipt, "certificate_id": cert_id}


def _meter_subjects(ctx: AppContext, p: Principal, agreement_id: str, hashes: list[str], param_hash: str,
                    journal: Journal) -> None:
    """Meter every subject of an encrypted check in one transaction (all or nothing), ``journal`` its last write:
    the call once, each subject's ``verify`` and ``param`` meters in one statement per meter for the whole batch
    (`policies.quotas.consume_subjects_in`; a refusal names the first exhausted subject's ``subject_index``)."""
    agreement = policies.load_agreement(ctx.engine, agreement_id)
    if agreement is None:  # pragma: no cover - the decision just found it
        raise not_found("agreement")
    with ctx.engine.begin() as conn:
        policy_quotas.consume_subjects_in(conn, agreement, p.name, meters_for(Action.VERIFY_CHECK),
                                          dt.datetime.now(dt.UTC), hashes, param_hash)
        journal(conn)


def check_encrypted(ctx: AppContext, p: Principal, name: str, body: EncryptedCheckBody,
                    ev: AuditEvent) -> dict[str, Any]:
    """Threshold checks for many subjects under the bank's BFV key (see the module docstring)."""
    consent = digest(ctx, body.consent_ref)
    request_digest = digest(ctx, body.context.encode() + b"|" + body.ciphertext.encode())
    ev.details.update(subjects=len(body.subjects), consent_digest=consent, request_digest=request_digest)
    product, ds, vetted = product_for_check(ctx, name, ev)
    threshold = vetted.threshold
    if threshold is None:
        raise DomainError(INVALID_REQUEST, "this product has no encrypted form: only a single threshold "
                                           "`column >= :param` or `column <= :param` qualifies")
    # Canonical spellings, each subject once: a repeat (7 and "7") would be a second threshold for one subject
    # under one count. Malformed or repeated subjects cost nothing.
    subjects = canonical_subjects(vetted.subject_kind, body.subjects)
    hashes = ctx.keys.subject_hashes(subjects)
    ev.details.update(subject_hashes=hashes)
    # The thresholds are hidden, and one ciphertext can be sent again with the subjects in other slots: every
    # slot of every encrypted check is a new parameter value for its subject (a fresh nonce), never a repeat.
    params = {"product": product.name, "encrypted_check": secrets.token_hex(16)}
    note_expiry(ctx, body.agreement_id)
    policies.check(ctx.engine, actor_of(p), Action.VERIFY_CHECK, body.agreement_id, datasets=[ds.name],
                   columns={ds.name: sorted(vetted.columns)}, purpose=body.purpose, consent_ref=body.consent_ref,
                   subject_hash=hashes[0], params=params, hash_alg=ctx.settings.hash_alg).raise_if_denied()
    consent_ids = body.consent_ids or ([body.consent_ref] if len(hashes) == 1 else [])
    consent_registry.require_for(ctx, p, ds, product.name, consent_ids, ev, subject_hashes=list(hashes),
                                 expected=len(hashes))
    refuse_if_objected(ctx, body.agreement_id, hashes)
    # The product's certificate under this agreement: named before anything is read, whatever the subjects.
    cert_id, issue_cert = certificates.for_check(ctx, product, body.agreement_id)
    ev.details.update(certificate_id=cert_id)
    bounds = SignBounds(*sign_box(threshold))
    # Check, then charge: validate the context and the ciphertext (a dry evaluation on placeholder values, no
    # data read, result discarded) before any subject's allowance is used.
    key = (p.name, "sign", repr(sign_box(threshold)), digest(ctx, body.context))
    (public, plan), lock = ctx.caches.sign_contexts.get(key, lambda: load_sign_context(body.context, bounds))
    with lock:
        evaluate_masked_sign_with(public, plan, body.ciphertext, [bounds.value_min] * len(hashes), bounds)
    # The lookup and the evaluation succeed for any subject set; the ciphertext leaves only once every subject's
    # meters commit with the request's entry (`_answered`), all or nothing.
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    values, _ = threshold_values(worker, vetted, subjects)
    with lock:
        out = evaluate_masked_sign_with(public, plan, body.ciphertext, values, bounds)
    receipt = issue_receipt(ctx, {
        "kind": "verification.encrypted", "product": product.name, "agreement_id": body.agreement_id,
        "subjects": len(hashes), "subject_hashes_digest": digest(ctx, "\n".join(hashes)), "consent_digest": consent,
        "request_digest": request_digest, "output_digest": digest(ctx, out),
        "dataset_fingerprint": ds.fingerprint, "certificate_id": cert_id})
    param_hash = policies.params_digest(params, ctx.settings.hash_alg)
    _answered(ctx, ev, digest(ctx, out), lambda journal: _meter_subjects(ctx, p, body.agreement_id, hashes,
                                                                          param_hash, _after(issue_cert, journal)))
    return {"ciphertext": out, "receipt": receipt, "certificate_id": cert_id}
