"""Banks' pages: plain verification checks (核验, exactly as ``POST /v1/verifications/{name}/check``, through
`gateway.services.verification`), and PSI and anonymous checks (匿踪查询): the agreements granting them, the bank's
history read from its own audit entries, and reading a receipt back (`gateway.services.psi`). Ids are blinded on
the bank's machine, never typed here."""

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
from catalog.errors import INVALID_REQUEST, DomainError
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
from gateway.services.verification import CheckBody, check_answer
from vocab.actions import AuditAction
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
            raise DomainError(INVALID_REQUEST, "the check is not complete",
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
        raise DomainError(INVALID_REQUEST, "since must be a date (YYYY-MM-DD)", [{"field": "since"}]) from None
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
