"""Banks' pages: plain verification checks (核验, exactly as ``POST /v1/verifications/{name}/check``, through
`gateway.services.verification`), and PSI and anonymous checks (匿踪查询): the agreements granting them, the bank's
history read from its own audit entries, and reading a receipt back (`gateway.services.psi`). Ids are blinded on
the bank's machine, never typed here.

Encrypted checks (`verify_encrypted`) are encrypted with a key pair made on the bank's machine: the console, which
runs no JavaScript and must never hold the bank's secret key, explains this and offers the SDK snippet to run them
(a download). The checks page (`checks_page`) lists the bank's plain, encrypted and anonymous checks and its
scores with their receipt digests (its own audit entries), and verifies a pasted receipt's signature
(`read_any_receipt`)."""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

import policies
from catalog import products
from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError
from gateway import latency
from gateway.console._web import (
    PAGE,
    audit_event,
    ctx_of,
    guarded,
    in_thread,
    posted_form,
    render,
    session_actor,
    signed_in,
)
from gateway.console.sessions import Session
from gateway.context import AppContext
from gateway.services import audit as audit_service
from gateway.services import psi as psi_service
from gateway.services.receipts import digest, read_receipt
from gateway.services.verification import CheckBody, check_answer
from vocab.actions import AuditAction
from vocab.i18n import _
from vocab.roles import Role

router = APIRouter(include_in_schema=False)


def _param_value(raw: str) -> Any:
    """A form value as the JSON scalar it spells (numbers stay numbers), else the text itself."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, str, bool)) else raw


async def _verify_page(request: Request, session: Session, product: str, status: int = 200,
                       **extra: Any) -> Response:
    ctx = ctx_of(request)

    def load() -> dict[str, Any]:
        prods = [p.public() for p in products.list_products(ctx.engine)]
        ags = [a.public() for a in policies.list_agreements(ctx.engine, session_actor(session), state="active")
               if "verify" in a.document.job_kinds and a.grantee == session.principal.name]
        return {"products": prods, "agreements": ags}

    data = await in_thread(load)
    chosen = next((p for p in data["products"] if p["name"] == product), data["products"][0] if data["products"]
                  else None)
    return render(request, "verify_check.html", session, status=status, chosen=chosen, **data, **extra)


@router.get("/verify", name="console.verify")
@guarded
async def verify_page(request: Request, product: str = "") -> Response:
    session = await signed_in(request, Role.BANK)
    return await _verify_page(request, session, product)


@router.post("/verify", name="console.verify.check")
@guarded
async def verify_check(request: Request) -> Response:
    """A plain yes/no check, exactly as ``POST /v1/verifications/{name}/check`` (same metering, receipt and
    latency padding; the audit entry holds the keyed subject hash only)."""
    ev = audit_event(request)
    ev.action = AuditAction.CONSOLE_VERIFY_CHECK
    ctx = ctx_of(request)
    async with latency.padded(ctx.settings.latency_bucket_ms):
        session = await signed_in(request, Role.BANK)
        form = await posted_form(request, session)
        ev.agreement_id = form.get("agreement_id", "")[:40] or None
        try:
            body = CheckBody(agreement_id=form.get("agreement_id", ""), subject=form.get("subject", "").strip(),
                             params={k[6:]: _param_value(v) for k, v in form.items() if k.startswith("param.")},
                             consent_ref=form.get("consent_ref", "").strip(),
                             purpose=form.get("purpose", "").strip() or None)
        except ValidationError as e:
            raise DomainError(INVALID_REQUEST, _("the check is not complete"),
                              [{"field": ".".join(str(x) for x in err["loc"]), "problem": err["msg"]}
                               for err in e.errors()]) from None
        out = await in_thread(check_answer, ctx, session.principal, form.get("product", ""), body, ev)
    return await _verify_page(request, session, form.get("product", ""), answer=out, asked=body)


PSI_HISTORY = (("size", "psi.size"), ("members", "psi.members"), ("anon", "verify.check_anonymous"))


HISTORY_DAYS = 30


def _details(entry: dict[str, Any]) -> dict[str, Any]:
    d = entry.get("details") or {}
    return dict(json.loads(d)) if isinstance(d, str) else dict(d)


def _epsilon_text(value: str | None) -> str:
    """The audit entry's exact ε ("3/4") as a decimal, with the exact fraction where the decimal rounds."""
    if not value:
        return ""
    try:
        exact = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return value
    shown = f"{float(exact):.6g}"
    return shown if Fraction(shown) == exact else f"{shown} ({value})"


def _psi_history(ctx: AppContext, session: Session, ts_from: str, cursors: dict[str, int]
                 ) -> dict[str, tuple[list[dict[str, Any]], int | None]]:
    """The bank's own allowed PSI and anonymous-check entries since ``ts_from``, read like the audit page
    (`gateway.services.audit.page`, scoped to the principal), one keyset page of `PAGE` per kind."""
    out = {}
    for key, action in PSI_HISTORY:
        rows = audit_service.page(ctx, session.principal, cursors.get(key, 0), PAGE + 1,
                                 {"action": action, "decision": "allow", "actor": session.principal.name,
                                  "ts_from": ts_from})["entries"]
        more = len(rows) > PAGE
        out[key] = ([{**r, "details": _details(r), "epsilon": _epsilon_text(r["epsilon"])} for r in rows[:PAGE]],
                    rows[PAGE - 1]["seq"] if more else None)
    return out


async def _psi_render(request: Request, session: Session, since: str = "", cursors: dict[str, int] | None = None,
                      **extra: Any) -> Response:
    ctx = ctx_of(request)
    try:
        start = dt.date.fromisoformat(since.strip()) if since.strip() else None
    except ValueError:
        raise DomainError(INVALID_REQUEST, _("since must be a date (YYYY-MM-DD)"), [{"field": "since"}]) from None
    start = start or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=HISTORY_DAYS)
    cursors = cursors or {"size": 0, "members": 0, "anon": 0}

    def load() -> dict[str, Any]:
        return {"agreements": psi_service.bank_agreements(ctx, session.principal),
                "history": _psi_history(ctx, session, f"{start.isoformat()}T00:00:00", cursors)}

    data = await in_thread(load)
    return render(request, "psi.html", session, since=start.isoformat(), cursors=cursors, **data, **extra)


@router.get("/psi", name="console.psi")
@guarded
async def psi_page(request: Request, since: str = "", size_after: int = 0, members_after: int = 0,
                   anon_after: int = 0) -> Response:
    """Private set intersection and anonymous checks: the bank's agreements granting them, its history read
    from its own audit entries, and the CLI commands to run — ids are blinded on the bank's machine, never typed
    here."""
    session = await signed_in(request, Role.BANK)
    cursors = {"size": max(0, size_after), "members": max(0, members_after), "anon": max(0, anon_after)}
    return await _psi_render(request, session, since, cursors)


@router.post("/psi/receipt", name="console.psi.receipt")
@guarded
async def psi_receipt(request: Request) -> Response:
    """Read one of the bank's PSI or anonymous-check receipts (pasted; it holds the noisy size the service does
    not keep) and show its claims next to the history, after checking the signature."""
    ev = audit_event(request)
    ev.action = AuditAction.CONSOLE_PSI_RECEIPT
    session = await signed_in(request, Role.BANK)
    form = await posted_form(request, session)
    read = psi_service.read_bank_receipt(ctx_of(request), session.principal, form.get("receipt", "").strip()[:20_000])
    ev.output_digest = read["digest"]
    return await _psi_render(request, session, form.get("since", ""), receipt=read)


# --- checks, scoring and receipts -------------------------------------------------------------------------------

CHECK_HISTORY = (("verify.check", "plain"), (AuditAction.CONSOLE_VERIFY_CHECK.value, "plain"),
                 ("verify.check_encrypted", "encrypted"), ("verify.check_anonymous", "anonymous"),
                 ("model.score", "scoring"))
RECEIPT_CLAIMS = ("kind", "issued_at", "agreement_id", "product", "model_id", "dataset", "result", "subjects",
                  "bank_ids", "epsilon", "size", "bucket_size", "consent_digest", "params_digest")


def _check_history(ctx: AppContext, session: Session, ts_from: str) -> list[dict[str, Any]]:
    """The bank's own answered checks and scores since ``ts_from``, newest first (its audit entries, read like the
    audit page: `gateway.services.audit.page` scoped to the principal; at most `PAGE` of each kind)."""
    rows: list[dict[str, Any]] = []
    for action, kind in CHECK_HISTORY:
        page = audit_service.page(ctx, session.principal, 0, PAGE,
                                  {"action": action, "decision": "allow", "actor": session.principal.name,
                                   "ts_from": ts_from})["entries"]
        rows += [{**r, "details": _details(r), "kind": kind} for r in page if r.get("output_digest")]
    return sorted(rows, key=lambda r: r["seq"], reverse=True)


def read_any_receipt(ctx: AppContext, session: Session, receipt: str) -> dict[str, Any]:
    """Any receipt this service signed (verification, encrypted check, score, PSI, anonymous check), after
    checking the service key's signature (as `veilbox.bank.verify_receipt` does offline) and that it was issued under
    an agreement the bank holds; its claims and digest (the history's receipt digest)."""
    claims = read_receipt(ctx, receipt)
    if claims is None:
        raise DomainError(INVALID_REQUEST, _("That is not a receipt signed by this service (the signature does not "
                                             "verify)."), [{"field": "receipt", "reason": "receipt.invalid"}])
    ag = policies.load_agreement(ctx.engine, str(claims.get("agreement_id", "")))
    if ag is None or ag.grantee != session.principal.name:
        raise DomainError(POLICY_DENIED, _("That receipt was not issued under an agreement you hold."),
                          [{"field": "receipt", "reason": "receipt.not_yours"}])
    shown = [(k, claims[k]) for k in RECEIPT_CLAIMS if k in claims]
    return {"claims": shown, "digest": digest(ctx, receipt)}


async def _checks_render(request: Request, session: Session, since: str = "", **extra: Any) -> Response:
    ctx = ctx_of(request)
    try:
        start = dt.date.fromisoformat(since.strip()) if since.strip() else None
    except ValueError:
        raise DomainError(INVALID_REQUEST, _("since must be a date (YYYY-MM-DD)"), [{"field": "since"}]) from None
    start = start or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=HISTORY_DAYS)
    rows = await in_thread(_check_history, ctx, session, f"{start.isoformat()}T00:00:00")
    return render(request, "checks.html", session, since=start.isoformat(), history=rows, **extra)


@router.get("/checks", name="console.checks")
@guarded
async def checks_page(request: Request, since: str = "") -> Response:
    """The bank's checks (plain, encrypted, anonymous) and scores with their receipt digests, and a receipt
    reader."""
    session = await signed_in(request, Role.BANK)
    return await _checks_render(request, session, since)


@router.post("/checks/receipt", name="console.checks.receipt")
@guarded
async def checks_receipt(request: Request) -> Response:
    """Verify a pasted receipt's signature and show its claims beside the history."""
    ev = audit_event(request)
    session = await signed_in(request, Role.BANK)
    form = await posted_form(request, session)
    read = await in_thread(read_any_receipt, ctx_of(request), session, form.get("receipt", "").strip()[:20_000])
    ev.output_digest = read["digest"]
    return await _checks_render(request, session, form.get("since", ""), receipt=read)


SDK_SNIPPET = '''"""Encrypted threshold checks from the bank's machine (Veilbox SDK).

The thresholds are encrypted here with a BFV key pair made on this machine; the service compares them with the
owner's data under encryption and never sees a threshold or the secret key. Run:

    pip install veilbox
    VEILBOX_URL=%(url)s VEILBOX_TOKEN=<your token> python encrypted_check.py

"""

import os

from veilbox import bank
from veilbox.client import Client

client = Client(os.environ["VEILBOX_URL"], os.environ["VEILBOX_TOKEN"])
keys = bank.verification_keys()  # the secret key never leaves this process
answers, receipt = bank.check_thresholds(
    client, %(product)r, %(agreement)r,
    subjects=["SUBJECT-1", "SUBJECT-2"],  # your subjects
    thresholds=[5000, 8000],              # one integer threshold per subject, encrypted before it is sent
    consent_ref="CONSENT-REF",
    keys=keys,
)
print(answers)
print(receipt)  # paste it on the console's Checks & receipts page to verify it, or bank.verify_receipt offline
'''


def _snippet(request: Request, product: str, agreement: str) -> str:
    return SDK_SNIPPET % {"url": str(request.base_url).rstrip("/"), "product": product or "PRODUCT",
                          "agreement": agreement or "AGREEMENT_ID"}


@router.get("/verify/encrypted", name="console.verify.encrypted")
@guarded
async def verify_encrypted(request: Request, product: str = "", agreement: str = "") -> Response:
    """Encrypted checks: why they run on the bank's side, and the SDK snippet to run them."""
    session = await signed_in(request, Role.BANK)
    ctx = ctx_of(request)

    def load() -> dict[str, Any]:
        prods = [p.public() for p in products.list_products(ctx.engine)]
        ags = [a.public() for a in policies.list_agreements(ctx.engine, session_actor(session), state="active")
               if "verify" in a.document.job_kinds and a.grantee == session.principal.name]
        return {"products": [p for p in prods if p.get("encrypted_form")], "agreements": ags}

    data = await in_thread(load)
    chosen_product = product or (data["products"][0]["name"] if data["products"] else "")
    chosen_ag = agreement or (data["agreements"][0]["id"] if data["agreements"] else "")
    return render(request, "verify_encrypted.html", session, snippet=_snippet(request, chosen_product, chosen_ag),
                  product=chosen_product, agreement=chosen_ag, **data)


@router.get("/verify/encrypted_check.py", name="console.verify.sdk")
@guarded
async def verify_sdk(request: Request, product: str = "", agreement: str = "") -> Response:
    """The SDK snippet as a file to download (nothing secret: the keys are made on the bank's machine)."""
    await signed_in(request, Role.BANK)
    return Response(_snippet(request, product[:100], agreement[:64]), media_type="text/x-python; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="encrypted_check.py"'})
