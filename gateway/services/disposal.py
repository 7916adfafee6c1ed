"""An ended agreement's disposal (协议期满后数据的处置): its exit clause carried out step by step, then signed.

`dispose` runs for one agreement that was revoked or expired: `policies.disposal.start` fixes how it ended, then
each of `STEPS`, in order, in its own transaction with its ``agreement.dispose`` entry (``details.step``):

1. ``jobs``: pending and approved jobs cancelled, an approved job's charge refunded;
2. ``outputs``: released outputs sealed, deleted or kept per the clause, each named by its output digest;
3. ``models``: certificates of models trained under the agreement revoked (``models = "revoke"``): scoring them is
   refused with ``AGREEMENT_INACTIVE`` (`gateway.services.scoring`);
4. ``certificates``: the certificates of outputs released under the agreement revoked
   (`gateway.services.certificates.revoke_in_disposal`);

and ends with the disposal record — what, how, when and the fingerprints of what was disposed of — signed with the
service's signing key (the audit log's: Ed25519 or SM2 per suite, `gateway.keys`), stored with the disposal and
stated in the final ``agreement.dispose`` entry (``details.step = "record"``, its signature and digest). A step
done is never done again (`policies.disposal.run_step`): running `dispose` twice, or in two processes at once,
disposes once; a crash between steps is finished by the next run.

Triggers: synchronously after a revocation (`after_revocation`, from `gateway.routes.agreements` and the console:
a failure there leaves the revocation standing and the sweep finishes the disposal), and for expiry the job
worker's sweep (`dispose_due`, every half lease): it records the expiry (``agreement.expire``) and disposes of
every ended agreement whose disposal is not complete — also one whose revocation's disposal a crash cut short.

`read` answers ``GET /agreements/{id}/disposal`` for the agreement's owner, the data authority and regulators;
`verify_record` checks a record's signature with the service's public key.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

import policies
from catalog.errors import not_found
from cryptosuite import VerifyKey
from gateway.audit import AuditEvent
from gateway.identities import Principal
from gateway.journal import Journal, system_entry
from gateway.services import certificates
from gateway.services.agreements import note_expiry
from policies import disposal as pdisposal
from policies._clock import aware
from vocab.actions import AuditAction
from vocab.roles import SYSTEM, Role

if TYPE_CHECKING:  # gateway.context imports the services' round registry (gateway.caches)
    from gateway.context import AppContext

__all__ = ["STEPS", "after_revocation", "dispose", "dispose_due", "read", "verify_record"]

log = logging.getLogger(__name__)

#: The disposal's steps, in order: (name, step). A step takes the open transaction and the `Disposing` facts and
#: returns its result (JSON-able: what it did, with fingerprints); the record lists every step's result.
STEPS: list[tuple[str, pdisposal.Step]] = [*pdisposal.STEPS, ("certificates", certificates.revoke_in_disposal)]


def _entry(ctx: AppContext, agreement_id: str, details: dict[str, Any], digest: str | None = None) -> Journal:
    ev = AuditEvent(actor="system", role=SYSTEM, action=AuditAction.AGREEMENT_DISPOSE, agreement_id=agreement_id,
                    details=details, output_digest=digest)

    def make(_conn: Connection) -> AuditEvent:
        return ev

    return system_entry(ctx.audit, make)


def dispose(ctx: AppContext, agreement_id: str, *, now: dt.datetime | None = None) -> pdisposal.Disposal | None:
    """Carry out the agreement's exit clause if it has ended (see the module docstring); the disposal as stored,
    or None while the agreement is in force."""
    now = aware(now)
    d = pdisposal.start(ctx.engine, agreement_id, now=now)
    if d is None or d.completed_at is not None:
        return d
    if d.case == "expired":
        note_expiry(ctx, agreement_id)  # the one agreement.expire entry comes before the disposal's
    alg = ctx.audit.alg
    for name, step in STEPS:

        def noted(result: dict[str, Any], name: str = name) -> Journal:
            return _entry(ctx, agreement_id, {"step": name, **result})

        pdisposal.run_step(ctx.engine, agreement_id, name, step, hash_alg=alg, now=now, journal=noted)
    keys = ctx.audit.keys

    def recorded(record: dict[str, Any], signature: str) -> Journal:
        digest = ctx.keys.suite.digest(pdisposal.record_message(record))
        return _entry(ctx, agreement_id, {"step": "record", "case": record["case"], "signature": signature,
                                          "key_id": keys.key_id, "record_digest": digest}, digest)

    out = pdisposal.finish(ctx.engine, agreement_id, sign=lambda msg: keys.signing.sign(msg).hex(),
                           key_id=keys.key_id, hash_alg=alg, now=now, journal=recorded)
    log.info("agreement %s disposed of (%s)", agreement_id, d.case)
    return out


def after_revocation(ctx: AppContext, agreement_id: str) -> None:
    """`dispose` right after a committed revocation (API and console). A failure here (a store hiccup) is logged, not
    answered: the revocation stands and the worker's next sweep finishes the disposal (`dispose_due`)."""
    try:
        dispose(ctx, agreement_id)
    except Exception:
        log.exception("disposal of revoked agreement %s failed; the worker's sweep will finish it", agreement_id)


def dispose_due(ctx: AppContext, *, now: dt.datetime | None = None) -> list[str]:
    """The job worker's duty: dispose of every ended agreement whose disposal is not complete; the ids done now."""
    done = []
    for agreement_id in pdisposal.due(ctx.engine, now=now):
        out = dispose(ctx, agreement_id, now=now)
        if out is not None and out.completed_at is not None:
            done.append(agreement_id)
    return done


def read(ctx: AppContext, p: Principal, agreement_id: str) -> dict[str, Any]:
    """``GET /agreements/{id}/disposal``: the agreement's owner, the data authority and regulators (anyone else,
    or an unknown agreement: ``NOT_FOUND_OR_FORBIDDEN``). ``state``: ``none`` while nothing was disposed of,
    ``in_progress``, ``complete`` (with the signed record)."""
    ag = policies.load_agreement(ctx.engine, agreement_id)
    if ag is None or not (p.role in (Role.AUTHORITY, Role.REGULATOR) or (p.role is Role.OWNER and p.name == ag.owner)):
        raise not_found("agreement")
    note_expiry(ctx, agreement_id)
    d = pdisposal.load(ctx.engine, agreement_id)
    if d is None:
        return {"agreement_id": agreement_id, "case": None, "state": "none", "started_at": None, "steps_done": [],
                "completed_at": None, "record": None, "signature": None}
    return d.public()


def verify_record(record: dict[str, Any], signature: str, public_key: VerifyKey) -> bool:
    """Whether ``signature`` (hex) is the service's signature over the disposal ``record``."""
    try:
        return bool(public_key.verify(pdisposal.record_message(record), bytes.fromhex(signature)))
    except (ValueError, TypeError):
        return False
