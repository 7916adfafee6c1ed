"""Private set intersection and anonymous verification (匿踪查询): the orchestration behind `gateway.routes.psi`
(docs/mechanisms/psi.md).

Every function here is for a bank (the agreement's grantee) under an active agreement whose job kinds grant it:
`setup` (checked, not metered: it answers nothing about any list), `size_setup`, `size` (discrete Laplace noise,
ε charged on the ledger like a query, a call and a job metered; the answer is computed first and leaves only if
the debit and the meters commit, with the request's audit entry in the debit's transaction: `gateway.journal`),
`members` (metered), `anonymous_info` and `check_anonymous` (metered per bucket; the service sees a bucket of at
least k subjects and signs a receipt without a result, which it does not know). A metered call is decided first
(`policies.permit`: quotas from a snapshot), its answer computed, and its meters consumed with the request's
audit entry in one transaction (`_metered`): the answer leaves only if both commit. Every answer carries a
signed receipt (`gateway.services.receipts`) and fills the request's `AuditEvent` (ε, sizes, digests — never a
subject or an id).

Hostile messages (elements that are not P-256 x-coordinates, wrong lengths, repeats, a double-blinded set of the
wrong size) are ``CIPHERTEXT_INVALID`` or ``INVALID_REQUEST`` before anything is metered or charged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from sqlalchemy import Connection

import policies
from catalog import certificates, products, registry
from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError, invalid, not_found
from catalog.registry import Dataset
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.errors import mpc_refusal
from gateway.identities import Principal
from gateway.journal import Journal, request_entry
from gateway.services import certificates as product_certificates
from gateway.services import consent as consent_registry
from gateway.services import jobs as jobflow
from gateway.services.agreements import note_expiry, quotas_today
from gateway.services.jobs import actor_of
from gateway.services.receipts import digest as _digest
from gateway.services.receipts import issue_receipt, read_receipt
from gateway.services.storage import check_copy
from gateway.services.verification import product_for_check as _product
from gateway.services.verification import question_digest
from mpc import psi
from mpc.errors import MpcError
from mpc.psi import group
from policies import Action, Budget
from policies import consent as policy_consent
from policies import ledger as policy_ledger
from sandbox.dp import DiscreteLaplace, as_fraction
from sandbox.psi import SetupStore, bucket_verdicts
from sandbox.verify import bind_canonical, canonical_params

__all__ = ["MAX_BANK_IDS", "PSI_KINDS", "RECEIPT_KINDS", "RECEIPT_SHOWN", "AnonCheckBody", "AnonCheckOut", "AnonInfo",
           "MembersBody", "MembersOut", "PsiSetupBody", "PsiSetupOut", "SizeBody", "SizeOut", "SizeSetupBody",
           "SizeSetupOut", "anonymous_info", "bank_agreements", "check_anonymous", "members", "min_bucket",
           "read_bank_receipt", "setup", "size", "size_setup", "store"]

#: Ids per psi_size / psi_members request (the HTTP body limit also applies).
MAX_BANK_IDS = 100_000


def store(ctx: AppContext) -> SetupStore:
    """The context's PSI and anonymous-check setups (`gateway.caches.Caches.psi_setups`)."""
    return ctx.caches.psi_setups


def _decode(text: str, field: str, limit: int | None) -> list[bytes]:
    try:
        blob = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise DomainError("CIPHERTEXT_INVALID", f"{field} is not base64") from None
    try:
        return group.split(blob, limit)
    except MpcError as e:
        raise mpc_refusal(e, [{"field": field}]) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _dataset(ctx: AppContext, name: str, fingerprint: str | None, ev: AuditEvent) -> Dataset:
    ev.dataset = name
    ds = registry.get(ctx.engine, name)
    if ds is None:
        raise not_found("dataset")
    if fingerprint is not None and fingerprint != ds.fingerprint:
        raise invalid("the dataset has a new version: run the setup again",
                      [{"field": "dataset_fingerprint", "problem": "not the current version"}])
    return check_copy(ctx, ds)  # its stored copy verified before it is read (gateway.services.storage)


def _mpc(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except MpcError as e:
        raise mpc_refusal(e) from None


# --- models ----------------------------------------------------------------------------------------------------

PsiKind = Literal["psi_size", "psi_members"]
Elements = Field(description="base64 of concatenated 32-byte P-256 x-coordinates")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    dataset: str = Field(max_length=128)


class PsiSetupBody(_Body):
    kind: PsiKind
    purpose: str | None = Field(None, max_length=64)


class PsiSetupOut(BaseModel):
    dataset: str
    dataset_fingerprint: str
    kind: PsiKind
    set_size: int = Field(description="elements in T (distinct ids padded to their size class with dummies)")
    elements: str | None = Field(None, description="psi_size: base64 T, sorted")
    filter: str | None = Field(None, description="psi_members: base64 sorted 8-byte tags of T")


class SizeSetupBody(_Body):
    dataset_fingerprint: str = Field(max_length=128)
    elements: str = Elements


class SizeSetupOut(BaseModel):
    setup_id: str
    dataset_fingerprint: str


class SizeBody(_Body):
    dataset_fingerprint: str = Field(max_length=128)
    setup_id: str = Field(max_length=64)
    epsilon: StrictFloat | StrictInt | StrictStr = Field(description="ε to spend on the release (charged on the "
                                                                        "ledger)")
    elements: str = Elements
    purpose: str | None = Field(None, max_length=64)


class SizeOut(BaseModel):
    size: int = Field(description="the intersection size plus discrete Laplace noise (never exact)")
    epsilon: str
    noise_scale: float
    accuracy_95: float = Field(description="|noise| stays below this with probability 0.95")
    bank_ids: int
    receipt: str
    source: list[dict[str, str]] = Field(default_factory=list, description="where the count's data came from "
                                         "(在成果中注明数据来源): the dataset, its owner and its fingerprint")


class MembersBody(_Body):
    dataset_fingerprint: str = Field(max_length=128)
    elements: str = Elements
    consent_refs: list[str] = Field(default_factory=list, max_length=MAX_BANK_IDS,
                                    description="one consent reference per id, in order (personal datasets)")
    purpose: str | None = Field(None, max_length=64)


class MembersOut(BaseModel):
    elements: str = Field(description="base64, the bank's elements re-keyed by the service, in order")
    receipt: str


class AnonInfo(BaseModel):
    product: str
    dataset_fingerprint: str
    bucket_bits: int
    buckets: int
    min_bucket: int


class AnonCheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreement_id: str = Field(max_length=64)
    bucket_bits: StrictInt = Field(ge=0, le=24)
    bucket: StrictInt = Field(ge=0)
    element: StrictStr = Field(max_length=64, description="base64 x(a·H(subject)), 32 bytes")
    params: dict[str, Any] = Field(default_factory=dict)
    consent_ref: str = Field(min_length=1, max_length=200)
    purpose: str | None = Field(None, max_length=64)


class AnonCheckOut(BaseModel):
    evaluated: str = Field(description="base64 x(rb·e)")
    labels: str = Field(description="base64 of the bucket's 33-byte labels, sorted")
    aad: str = Field(description="what every label's AES-GCM authenticates (product, question, call)")
    bucket_size: int
    receipt: str
    certificate_id: str | None = Field(None, description="the product's certificate under the agreement (VBX-PC-…)")


# --- PSI -------------------------------------------------------------------------------------------------------


def _check(ctx: AppContext, p: Principal, action: Action, agreement_id: str, ds: Dataset, purpose: str | None,
           **facts: Any) -> None:
    note_expiry(ctx, agreement_id)
    policies.check(ctx.engine, actor_of(p), action, agreement_id, datasets=[ds.name], purpose=purpose,
                   **facts).raise_if_denied()


def _action(kind: str) -> Action:
    return Action.PSI_SIZE if kind == "psi_size" else Action.PSI_MEMBERS


def setup(ctx: AppContext, p: Principal, body: PsiSetupBody, ev: AuditEvent) -> PsiSetupOut:
    """The dataset version's blinded set (psi_size) or tag filter (psi_members); checked, not metered."""
    ds = _dataset(ctx, body.dataset, None, ev)
    ev.details.update(kind=body.kind)
    # the setup answers nothing about any list: no consent is involved (a placeholder satisfies the rule)
    _check(ctx, p, _action(body.kind), body.agreement_id, ds, body.purpose, consent_ref="setup")
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    setup = store(ctx).psi(worker, ds, "size" if body.kind == "psi_size" else "members")
    out = PsiSetupOut(dataset=ds.name, dataset_fingerprint=ds.fingerprint, kind=body.kind,
                      set_size=len(setup.elements))
    if body.kind == "psi_size":
        out.elements = _b64(group.join(setup.elements))
    else:
        out.filter = _b64(psi.members_filter(setup.elements))
    ev.details.update(set_size=len(setup.elements))
    return out


def size_setup(ctx: AppContext, p: Principal, body: SizeSetupBody, ev: AuditEvent) -> SizeSetupOut:
    """Store the bank's double-blinded T (per bank and dataset version): the ``setup_id`` of psi_size."""
    ds = _dataset(ctx, body.dataset, body.dataset_fingerprint, ev)
    _check(ctx, p, Action.PSI_SIZE, body.agreement_id, ds, None)
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    st = store(ctx)
    setup = st.psi(worker, ds, "size")
    returned = _decode(body.elements, "elements", len(setup.elements))
    table_id = _mpc(st.store_table, setup, p.name, returned)
    ev.details.update(set_size=len(returned), setup_id=table_id)
    return SizeSetupOut(setup_id=table_id, dataset_fingerprint=ds.fingerprint)


def size(ctx: AppContext, p: Principal, body: SizeBody, ev: AuditEvent) -> SizeOut:
    """The intersection size with discrete Laplace noise, ε charged on the ledger, a signed receipt."""
    try:
        epsilon = as_fraction(body.epsilon)
        if epsilon < as_fraction(repr(ctx.settings.min_query_epsilon)):
            raise ValueError(f"epsilon must be at least {ctx.settings.min_query_epsilon}")
        mechanism = DiscreteLaplace.calibrate(1, epsilon)
    except ValueError as e:
        raise invalid(str(e), [{"field": "epsilon"}]) from None
    ds = _dataset(ctx, body.dataset, body.dataset_fingerprint, ev)
    query = _decode(body.elements, "elements", MAX_BANK_IDS)
    if len(set(query)) != len(query):
        raise invalid("the blinded ids must be distinct", [{"field": "elements"}])
    _check(ctx, p, Action.PSI_SIZE, body.agreement_id, ds, body.purpose)  # no setup work for a refused caller
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    st = store(ctx)
    setup = st.psi(worker, ds, "size")
    table = st.table(setup, p.name, body.setup_id)  # unknown setups cost nothing
    cost = Budget(epsilon, Fraction(0))
    ev.details.update(bank_ids=len(query), setup_id=body.setup_id)
    note_expiry(ctx, body.agreement_id)
    allowed = policies.permit(ctx.engine, actor_of(p), Action.PSI_SIZE, body.agreement_id, datasets=[ds.name],
                              purpose=body.purpose, cost=cost)
    job_id = "psi-" + secrets.token_hex(12)
    exact = psi.size_count(setup.key, query, table)  # nothing leaves unless the debit below commits
    noisy = mechanism.release([exact])[0]
    receipt = issue_receipt(ctx, {
        "kind": "psi.size", "agreement_id": body.agreement_id, "dataset": ds.name, "job_id": job_id,
        "dataset_fingerprint": ds.fingerprint, "bank_ids": len(query), "epsilon": str(epsilon),
        "request_digest": _digest(ctx, body.elements), "size": noisy})

    def charged(_conn: Connection, entry: AuditEvent) -> bool:  # the request's entry commits with the debit
        entry.epsilon, entry.delta, entry.output_digest = str(epsilon), "0", _digest(ctx, receipt)
        entry.details.update(job_id=job_id)
        return True

    entry = request_entry(ctx.audit, ev, charged)

    def metered(conn: Connection) -> None:  # the call's meters, then the entry: in the debit's transaction
        allowed.consume_in(conn)
        entry(conn)

    policy_ledger.charge(ctx.engine, body.agreement_id, [ds.name], cost, job_id, journal=metered)
    ev.epsilon, ev.delta = str(epsilon), "0"
    ev.output_digest = _digest(ctx, receipt)
    ev.details.update(job_id=job_id)
    return SizeOut(size=noisy, epsilon=str(epsilon), noise_scale=mechanism.scale,
                   accuracy_95=mechanism.accuracy(0.05), bank_ids=len(query), receipt=receipt,
                   source=[certificates.source_of(ds.name, ds.owner, ds.fingerprint)])


def members(ctx: AppContext, p: Principal, body: MembersBody, ev: AuditEvent) -> MembersOut:
    """The bank's blinded ids re-keyed by the service (metered, a signed receipt)."""
    ds = _dataset(ctx, body.dataset, body.dataset_fingerprint, ev)
    elements = _decode(body.elements, "elements", MAX_BANK_IDS)
    refs_ok = len(body.consent_refs) == len(elements) and all(r.strip() and len(r) <= 200 for r in body.consent_refs)
    if ds.personal and not refs_ok:
        raise invalid("a personal dataset needs one consent reference per id",
                      [{"field": "consent_refs", "problem": f"{len(elements)} non-empty references expected"}])
    consent = _digest(ctx, "\n".join(body.consent_refs))
    ev.details.update(bank_ids=len(elements), consent_digest=consent)
    _check(ctx, p, Action.PSI_MEMBERS, body.agreement_id, ds, body.purpose, consent_ref=consent)
    consent_registry.require_for(ctx, p, ds, policy_consent.psi_product(ds.name), body.consent_refs, ev,
                                 expected=len(elements))  # the ids are checked, the blinded subjects cannot be
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    setup = store(ctx).psi(worker, ds, "members")
    note_expiry(ctx, body.agreement_id)
    allowed = policies.permit(ctx.engine, actor_of(p), Action.PSI_MEMBERS, body.agreement_id, datasets=[ds.name],
                              purpose=body.purpose, consent_ref=consent if body.consent_refs else None)
    out = group.join(psi.evaluate(setup.key, elements))
    receipt = issue_receipt(ctx, {
        "kind": "psi.members", "agreement_id": body.agreement_id, "dataset": ds.name,
        "dataset_fingerprint": ds.fingerprint, "bank_ids": len(elements), "consent_digest": consent,
        "request_digest": _digest(ctx, body.elements), "output_digest": _digest(ctx, out)})
    _metered(ctx, ev, allowed, _digest(ctx, receipt))  # nothing leaves unless the meters commit with the entry
    return MembersOut(elements=_b64(out), receipt=receipt)


def _metered(ctx: AppContext, ev: AuditEvent, allowed: policies.Permit, output_digest: str,
             first: Journal | None = None) -> None:
    """Consume a computed answer's meters with the request's entry (stating ``output_digest``) in their
    transaction, both or neither (`gateway.journal`); the answer leaves only once they commit. ``first`` (a
    product's certificate issued on its first use under the agreement) writes in that transaction too."""

    def answered(_conn: Connection, entry: AuditEvent) -> bool:
        entry.output_digest = output_digest
        return True

    entry = request_entry(ctx.audit, ev, answered)

    def journal(conn: Connection) -> None:
        if first is not None:
            first(conn)
        entry(conn)

    allowed.consume(ctx.engine, journal)
    ev.output_digest = output_digest


# --- anonymous verification ------------------------------------------------------------------------------------


def min_bucket(ctx: AppContext, p: Principal, agreement_id: str | None) -> int:
    """k: the service's setting, or more where the caller's agreement asks for more (``anon_min_bucket``)."""
    k = ctx.settings.anon_min_bucket
    ag = policies.load_agreement(ctx.engine, agreement_id) if agreement_id else None
    if ag is not None and ag.document.grantee == p.name and ag.document.anon_min_bucket is not None:
        k = max(k, ag.document.anon_min_bucket)
    return k


def _anon_setup(ctx: AppContext, name: str, ev: AuditEvent, k: int) -> tuple[Any, Dataset, Any, Any]:
    product, ds, vetted = _product(ctx, name, ev)
    if product.hide_membership:
        raise DomainError(POLICY_DENIED, "an anonymous check shows whether its subject is in the dataset: products "
                                         "declared with hide_membership have no anonymous form")
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    setup = store(ctx).anon(worker, ds, product.subject_column, k)
    if setup.bits is None:
        raise DomainError(POLICY_DENIED, f"the dataset has fewer subjects than the minimum bucket ({k}): no "
                                         f"anonymous form")
    return product, ds, vetted, setup


def anonymous_info(ctx: AppContext, p: Principal, name: str, agreement_id: str | None, ev: AuditEvent) -> AnonInfo:
    """The product's bucket layout for anonymous checks under the caller's minimum bucket."""
    product, ds, _vetted, setup = _anon_setup(ctx, name, ev, min_bucket(ctx, p, agreement_id))
    return AnonInfo(product=product.name, dataset_fingerprint=ds.fingerprint, bucket_bits=setup.bits,
                    buckets=1 << setup.bits, min_bucket=setup.k)


def check_anonymous(ctx: AppContext, p: Principal, name: str, body: AnonCheckBody, ev: AuditEvent) -> AnonCheckOut:
    """One anonymous check: labels only the bank can open for its own subject, metered per bucket."""
    consent = _digest(ctx, body.consent_ref)
    ev.details.update(consent_digest=consent)
    # The registered consent (where enforced) before the bucket layout is built or anything read: its grantee,
    # product and time are checked; its subject cannot be, the service never sees it (docs/consent.md).
    declared, declared_ds, _ = _product(ctx, name, ev)
    consent_registry.require_for(ctx, p, declared_ds, declared.name, [body.consent_ref], ev)
    product, ds, vetted, setup = _anon_setup(ctx, name, ev, min_bucket(ctx, p, body.agreement_id))
    if body.bucket_bits != setup.bits or body.bucket >= (1 << setup.bits):
        raise DomainError(INVALID_REQUEST, "the bucket layout has changed: ask GET /verifications/{name}/anonymous",
                          [{"field": "bucket_bits", "current": setup.bits}])
    element = _decode(body.element, "element", 1)
    if len(element) != 1:
        raise DomainError("CIPHERTEXT_INVALID", "one element (32 bytes) is expected")
    canonical = canonical_params(vetted, body.params)  # malformed parameters cost nothing
    params_digest = question_digest(product, canonical, ctx.settings.hash_alg)
    members = setup.bucket(body.bucket)
    bucket_hash = ctx.keys.subject_hash(f"anon-bucket|{ds.fingerprint}|{setup.bits}|{body.bucket}")
    ev.details.update(params_digest=params_digest, bucket_hash=bucket_hash, bucket_size=len(members),
                      bucket_bits=setup.bits)
    note_expiry(ctx, body.agreement_id)
    allowed = policies.permit(ctx.engine, actor_of(p), Action.VERIFY_ANONYMOUS, body.agreement_id,
                              datasets=[ds.name], columns={ds.name: sorted(vetted.columns)}, purpose=body.purpose,
                              consent_ref=body.consent_ref, subject_hash=bucket_hash,
                              params={"product": product.name, "params": canonical},
                              hash_alg=ctx.settings.hash_alg)
    # The product's certificate under this agreement: named before anything is read (`for_check`).
    cert_id, issue_cert = product_certificates.for_check(ctx, product, body.agreement_id)
    ev.details.update(certificate_id=cert_id)
    worker = jobflow.runtime(ctx).engines.worker_for(ds)
    subjects = [setup.subjects[i] for i in members]
    verdicts = bucket_verdicts(worker, vetted, subjects, bind_canonical(vetted, canonical))
    call = secrets.token_hex(16)
    aad = f"veilbox-anon|{product.name}|{params_digest}|{call}"
    answer = psi.anon_answer(setup.key, element[0],
                             [(setup.evaluated[i], v) for i, v in zip(members, verdicts, strict=True)], aad.encode(),
                             setup.points(body.bucket, members))
    receipt = issue_receipt(ctx, {
        "kind": "verification.anonymous", "product": product.name, "agreement_id": body.agreement_id,
        "bucket_hash": bucket_hash, "bucket_size": len(members), "params_digest": params_digest,
        "consent_digest": consent, "dataset_fingerprint": ds.fingerprint, "aad": aad,
        "answer_digest": _digest(ctx, answer.evaluated + answer.labels), "certificate_id": cert_id})
    # nothing leaves unless the meters commit with the entry (and, on first use, the product's certificate)
    _metered(ctx, ev, allowed, _digest(ctx, receipt), issue_cert)
    return AnonCheckOut(evaluated=_b64(answer.evaluated), labels=_b64(answer.labels), aad=aad,
                        bucket_size=len(members), receipt=receipt, certificate_id=cert_id)


# --- the bank's own view (the console's PSI page) ---------------------------------------------------------------

#: The job kinds of this module: an agreement granting one of them appears on the bank's PSI page.
PSI_KINDS = ("psi_size", "psi_members", "verify_anonymous")
RECEIPT_KINDS = ("psi.size", "psi.members", "verification.anonymous")
RECEIPT_SHOWN = ("kind", "issued_at", "agreement_id", "dataset", "product", "bank_ids", "epsilon", "size",
                 "bucket_size")


def bank_agreements(ctx: AppContext, p: Principal) -> list[dict[str, Any]]:
    """The bank's agreements granting a PSI kind, with remaining ε/δ and today's quotas (the same reads as the
    agreement page: `policies.read_budget`, `policies.read_usage`)."""
    actor, me = actor_of(p), p.name
    today = dt.datetime.now(dt.UTC).date()
    prods = [pr.public() for pr in products.list_products(ctx.engine)]
    out = []
    for ag in policies.list_agreements(ctx.engine, actor):
        kinds = [k for k in ag.document.job_kinds if k in PSI_KINDS]
        if not kinds or ag.grantee != me:
            continue
        row: dict[str, Any] = {"ag": ag.public(), "kinds": kinds, "remaining": None, "quotas": [],
                               "products": [pr for pr in prods if pr["dataset"] in ag.document.datasets],
                               "quota_limits": ag.document.quotas, "anon_min_bucket": ag.document.anon_min_bucket}
        try:
            row["remaining"] = policies.read_budget(ctx.engine, actor, ag.id).remaining.as_json()
            usage = policies.read_usage(ctx.engine, actor, ag.id, today, today).as_json()
            row["quotas"] = quotas_today(ag, usage, today)
        except DomainError as e:  # an agreement that ended: its budget and usage are no longer served
            row["unavailable"] = e.message
        out.append(row)
    return out


def read_bank_receipt(ctx: AppContext, p: Principal, receipt: str) -> dict[str, Any]:
    """A PSI or anonymous-check receipt's claims, after checking the service key's signature (as
    `veilbox.bank.verify_receipt` does offline) and that it was issued under an agreement the bank holds."""
    claims = read_receipt(ctx, receipt)
    if claims is None or claims.get("kind") not in RECEIPT_KINDS:
        raise DomainError(INVALID_REQUEST, "that is not a receipt signed by this service", [{"field": "receipt"}])
    ag = policies.load_agreement(ctx.engine, str(claims.get("agreement_id", "")))
    if ag is None or ag.grantee != p.name:
        raise DomainError(POLICY_DENIED, "that receipt was not issued under an agreement you hold",
                          [{"field": "receipt", "reason": "receipt.not_yours"}])
    shown = [(k, claims[k]) for k in RECEIPT_SHOWN if k in claims]
    return {"claims": shown, "digest": _digest(ctx, receipt)}
