"""Data owners' pages: proposing an agreement over their datasets, and deciding on jobs (approve the reviewed
spec, reject with a reason, release a custom job's output) through `gateway.services.jobs`.

Each form passes the request's audit entry (`form_event`) exactly as the API's route does, so the change and
its entry commit in one transaction (`gateway.journal`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

import policies
from catalog import registry
from catalog.errors import INVALID_REQUEST, DomainError, not_found
from gateway import identities, strict_json
from gateway.console._web import (
    audit_event,
    ctx_of,
    form_event,
    guarded,
    in_thread,
    posted_form,
    redirect,
    render,
    session_actor,
    signed_in,
)
from gateway.services import jobs as jobflow
from gateway.services.agreements import agreement_entry, check_grantee
from vocab.i18n import _
from vocab.jobs import JobKind
from vocab.roles import ANALYSTS, Role

router = APIRouter(include_in_schema=False)


@router.get("/agreements/new", name="console.agreement.new")
@guarded
async def agreement_new(request: Request) -> Response:
    session = await signed_in(request, Role.OWNER)
    ctx = ctx_of(request)
    mine = [d for d in await in_thread(registry.list_all, ctx.engine) if d.owner == session.principal.name]
    grantees = [p for p in await in_thread(identities.list_principals, ctx.engine) if p.role in ANALYSTS]
    today = dt.datetime.now(dt.UTC).date()
    return render(request, "agreement_new.html", session, datasets=mine, grantees=grantees,
                  valid_from=today.isoformat(), valid_until=today.replace(year=today.year + 1).isoformat(),
                  kinds=tuple(JobKind))


def _split(value: str) -> list[str]:
    return [x.strip() for x in value.replace("\n", ",").split(",") if x.strip()]


def _document(form: dict[str, str], kinds: list[str]) -> dict[str, Any]:
    """The agreement document from the form's fields (the library validates it, every problem reported)."""
    if form.get("document", "").strip():
        try:
            pasted = strict_json.loads(form["document"].encode())
        except ValueError:
            raise DomainError(INVALID_REQUEST, _("the JSON document is not valid JSON")) from None
        if not isinstance(pasted, dict):
            raise DomainError(INVALID_REQUEST, _("the JSON document must be an object"))
        return pasted
    ds = form.get("dataset", "")

    def num(name: str, default: str) -> Any:
        raw = form.get(name, "").strip() or default
        try:
            return int(raw) if raw.isdigit() else float(raw)
        except ValueError:
            raise DomainError(INVALID_REQUEST, _("%(name)s must be a number", name=name), [{"field": name}]) from None

    doc: dict[str, Any] = {
        "title": form.get("title", ""), "grantee": form.get("grantee", ""), "datasets": [ds] if ds else [],
        "columns": {ds: _split(form.get("columns", ""))} if ds else {}, "purposes": _split(form.get("purposes", "")),
        "job_kinds": kinds, "valid_from": f"{form.get('valid_from', '')}T00:00:00Z",
        "valid_until": f"{form.get('valid_until', '')}T00:00:00Z",
        "budget": {"epsilon": num("epsilon", "1"), "delta": form.get("delta", "").strip() or "1e-6"},
        "min_group_units": num("min_group_units", "10"), "approval": form.get("approval", "owner_each_job"),
        "quotas": {"calls_per_day": num("calls_per_day", "1000")},
    }
    return doc


def _num(x: float) -> str:
    """A figure for people: two significant digits, thousands separated."""
    if abs(x) >= 100:
        return f"{round(x):,}"
    return f"{float(f'{x:.2g}'):g}"


def owner_review(ctx: Any, actor: policies.Actor, job: Any, review: dict[str, Any]) -> dict[str, Any]:
    """The owner's review of a pending job in plain words: the columns read, the agreement's ε now and after this
    job, and the accuracy of each aggregate. The plan's ``expected_error`` of an average is stated for the smallest
    group the release allows (``min_group_units``, with the column's bounds as worst case), which beside the mock's
    means reads as a useless answer (± 1.8 million on averages of about 100,000); an average's error shrinks with
    its group's size, so it is stated here for the groups this query will have: the dataset's rows (known to its
    owner) over the groups of the answer on the mock, and for the smallest releasable group as the worst case.
    A count's or a sum's error does not depend on the group's size (the noise is added once per group)."""
    plan = review.get("plan") or {}
    out: dict[str, Any] = {"columns": plan.get("columns") or {}, "accuracy": []}
    try:
        status = policies.read_budget(ctx.engine, actor, job.agreement_id)
        now = status.remaining.epsilon
        out["eps_now"], out["eps_after"] = f"{float(now):g}", f"{float(now - job.cost.epsilon):g}"
    except DomainError:
        pass
    errors, funcs = plan.get("expected_error") or {}, plan.get("aggregates") or {}
    smallest = max(int(plan.get("min_group_units") or 1), 1)
    mock = (review.get("mock") or {}).get("mock_result") if isinstance(review.get("mock"), dict) else None
    groups = max(len((mock or {}).get("rows") or []), 1)
    rows = sum((d.rows or 0) for d in (registry.get(ctx.engine, n) for n in plan.get("datasets") or []) if d)
    typical = max(rows // groups, 1) if rows else None
    for col, hw in errors.items():
        if not isinstance(hw, int | float):
            continue
        func = funcs.get(col)
        if func == "avg" and typical:
            text = _("%(col)s: ± %(hw)s on the average of a group of about %(n)s (this dataset's %(rows)s rows over "
                     "the %(g)s groups of the answer on the mock), with 95 %% confidence; at worst ± %(worst)s, for "
                     "the smallest group that can be released (%(min)s)", col=col, hw=_num(hw * smallest / typical),
                     n=f"{typical:,}", rows=f"{rows:,}", g=groups, worst=_num(hw), min=smallest)
        elif func == "avg":
            text = _("%(col)s: ± %(worst)s on the average of the smallest group that can be released (%(min)s), "
                     "less in proportion for bigger groups, with 95 %% confidence", col=col, worst=_num(hw),
                     min=smallest)
        elif func == "count":
            text = _("%(col)s: ± %(hw)s on each count, whatever the group's size, with 95 %% confidence", col=col,
                     hw=_num(hw))
        else:
            text = _("%(col)s: ± %(hw)s on each total, whatever the group's size, with 95 %% confidence", col=col,
                     hw=_num(hw))
        out["accuracy"].append(text)
    return out


@router.get("/agreements/{agreement_id}/confirm/{action}", name="console.agreement.confirm")
@guarded
async def agreement_confirm(request: Request, agreement_id: str, action: str) -> Response:
    """The step before suspending or revoking: what the change does, and the reason the audit entry records."""
    session = await signed_in(request, Role.OWNER)
    if action not in ("suspend", "revoke"):
        raise not_found("action")
    ctx = ctx_of(request)
    audit_event(request).agreement_id = agreement_id[:40]
    ag = await in_thread(policies.get_agreement, ctx.engine, session_actor(session), agreement_id)
    return render(request, "agreement_confirm.html", session, ag=ag.public(), action=action)


@router.post("/agreements", name="console.agreement.create")
@guarded
async def agreement_create(request: Request) -> Response:
    session = await signed_in(request, Role.OWNER)
    raw = await request.form()
    form = await posted_form(request, session)
    kinds = [str(k) for k in raw.getlist("job_kinds")]
    ctx, ev = ctx_of(request), form_event(request)
    doc = _document(form, kinds)

    def create() -> policies.Agreement:
        check_grantee(ctx, doc)
        new_id = policies.new_agreement_id()  # named first: its entry commits with the proposal
        return policies.create_agreement(ctx.engine, session_actor(session), doc, agreement_id=new_id,
                                         hash_alg=ctx.settings.hash_alg, grade_ceilings=ctx.settings.grade_ceilings,
                                         journal=agreement_entry(ctx, ev, new_id, "grantee", "document_hash",
                                                                 datasets=True))

    ag = await in_thread(create)
    ev.agreement_id, ev.dataset = ag.id, ",".join(ag.document.datasets)
    ev.details.update(grantee=ag.grantee, document_hash=ag.document_hash)
    return redirect(f"/console/agreements/{ag.id}")


@router.post("/jobs/{job_id}/{action}", name="console.job.decide")
@guarded
async def job_decide(request: Request, job_id: str, action: str) -> Response:
    ev = form_event(request)
    ev.action = f"console.job.{action[:20]}"
    ev.details["job_id"] = job_id[:64]
    session = await signed_in(request, Role.OWNER)
    form = await posted_form(request, session)
    ctx, actor = ctx_of(request), session_actor(session)

    def run() -> None:
        if action == "approve":
            j = jobflow.approve_job(ctx, actor, job_id, form.get("spec_hash", ""), ev)
            ev.epsilon, ev.delta = str(j.cost.epsilon), str(j.cost.delta)
        elif action == "reject":
            reason = form.get("reason", "").strip()
            if not reason:
                raise DomainError(INVALID_REQUEST, _("a rejection needs a reason the grantee will read"),
                                  [{"field": "reason"}])
            j = jobflow.reject_job(ctx, actor, job_id, reason[:500], ev)
            ev.details["reason"] = reason[:500]
        elif action == "release":
            j, digest = jobflow.release_job(ctx, actor, job_id, ev)
            ev.output_digest = digest
        else:
            raise not_found("action")
        ev.agreement_id = j.agreement_id
        ev.dataset = ",".join(j.datasets) or None

    await in_thread(run)
    return redirect(f"/console/jobs/{job_id}")
