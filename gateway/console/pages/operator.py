"""Grantees' pages (operators and banks, the roles that hold agreements): the query workspace, the training and
custom-code job forms, and a released result as CSV.

The workspace previews a query through `gateway.services.jobs.preview_query` (what ``POST /v1/queries/preview``
answers: authorized and metered as a preview, no ε spent, no data read) and shows the cost, the budget left after
it, the accuracy in plain words for typical group sizes (from the mechanism's 95 % half-widths) and the exact
answer on the mock as a table. Submitting calls `gateway.services.jobs.submit` exactly as ``POST /v1/jobs`` does
(same vetting, metering and charge), with the request's audit entry committed in the submission's transaction.

A submission form carries a one-time form token; the job's id is derived from it and the principal
(`form_job_id`), so a form posted twice (a double click, a reload, a replayed POST) names the same job: the
second post finds it and shows it, and charges nothing — the job's primary key makes that hold under a race too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import secrets
from fractions import Fraction
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError

import policies
from catalog.errors import INVALID_REQUEST, DomainError, not_found
from gateway import errors, strict_json
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
from gateway.console.sessions import Session
from gateway.context import AppContext
from gateway.services import jobs as jobflow
from policies.jobs import load_job
from sandbox.jobs.query import prepare_for
from vocab.errors import ErrorCode
from vocab.i18n import _
from vocab.roles import ANALYSTS

__all__ = ["accuracy_lines", "form_job_id", "result_csv", "router"]

router = APIRouter(include_in_schema=False)

ROLES = tuple(sorted(r.value for r in ANALYSTS))
GROUP_SIZES = (100, 1_000, 10_000)  # "typical group sizes" the accuracy is stated for
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SQL_EXAMPLE = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
SPEC_EXAMPLES: dict[str, dict[str, Any]] = {
    "train": {"dataset": "tax_income", "features": ["age", "monthly_income"], "label": "has_default",
              "model": "logistic_regression", "epochs": 2, "batch_size": 256, "epsilon": 1.0, "delta": 1e-7,
              "max_grad_norm": 1.0},
    "code": {"dataset": "tax_income", "entrypoint": "main", "outputs": {"kind": "json", "max_bytes": 4096}},
}
CODE_EXAMPLE = "def main(inputs):\n    # inputs: the granted columns of the dataset\n    return {\"rows\": 0}\n"
MAX_SPEC_CHARS = 200_000


def form_job_id(principal: str, token: str) -> str:
    """The id of the job a submission form creates: derived from the form's one-time token and the principal, so
    the same form posted again names the same job (and another principal's token never names one of ours)."""
    return "job_" + hashlib.sha256(f"console-form|{principal}|{token}".encode()).hexdigest()[:20]


def _token(form: dict[str, str]) -> str:
    token = form.get("form_token", "")
    if not TOKEN.match(token):
        raise DomainError(INVALID_REQUEST, _("The form is missing its one-time token; reload the page and try "
                                             "again."), [{"field": "form_token"}])
    return token


def _agreements(ctx: AppContext, session: Session, kind: str) -> list[dict[str, Any]]:
    """Active agreements the principal holds that grant ``kind``."""
    return [a.public() for a in policies.list_agreements(ctx.engine, session_actor(session), state="active")
            if kind in a.document.job_kinds and a.grantee == session.principal.name]


def _number(raw: str, field: str) -> Any:
    """A form's ε or δ as the API body would carry it: a JSON number when it spells one, else exact text
    ("1/3"), which the sandbox parses exactly or refuses."""
    raw = raw.strip()
    if not raw:
        raise DomainError(INVALID_REQUEST, _("%(field)s is required", field=field), [{"field": field}])
    if len(raw) > 100:
        raise DomainError(INVALID_REQUEST, _("%(field)s is too long", field=field), [{"field": field}])
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else raw


def _query_spec(form: dict[str, str]) -> dict[str, Any]:
    sql = form.get("sql", "").replace("\r\n", "\n").strip()
    if not sql:
        raise DomainError(INVALID_REQUEST, _("Write a SQL query first."), [{"field": "sql"}])
    if len(sql) > 20_000:
        raise DomainError(INVALID_REQUEST, _("The SQL is longer than 20,000 characters."), [{"field": "sql"}])
    spec: dict[str, Any] = {"sql": sql, "epsilon": _number(form.get("epsilon", ""), "epsilon")}
    return spec


def _purpose(form: dict[str, str]) -> str | None:
    return form.get("purpose", "").strip()[:200] or None


def _fmt(x: float) -> str:
    """A half-width for people: two significant digits, thousands separated."""
    if x >= 100:
        return f"{round(x):,}"
    return f"{float(f'{x:.2g}'):g}"


def accuracy_lines(plan: Any, expected_error: dict[str, Any]) -> list[dict[str, Any]]:
    """The preview's 95 % half-widths in plain words, per aggregate column and typical group size. COUNT and
    SUM: the half-width does not depend on the group's size (the noise is added once per group), so a bigger
    group has a smaller relative error; AVG: the sum's and the count's errors divided by the group's size
    (`sandbox.sql.service.QueryPlan._half_width`), so ``expected_error`` (stated for a group of
    ``min_group_units``) scales by ``min_group_units / n``."""
    funcs = {o.name: plan.query.aggregates[o.index].func for o in plan.query.outputs if o.kind == "agg"}
    base = max(int(plan.min_group_units), 1)
    out = []
    for col, hw in expected_error.items():
        if not isinstance(hw, (int, float)):
            continue
        func = funcs.get(col, "")
        sizes = []
        for n in GROUP_SIZES:
            width = float(hw) * base / n if func == "avg" else float(hw)
            if func == "avg":
                text = _("± %(hw)s on the average for a group of %(n)s, with 95 %% confidence", hw=_fmt(width),
                         n=f"{n:,}")
            elif func == "sum":
                text = _("± %(hw)s on the total for a group of %(n)s, with 95 %% confidence", hw=_fmt(width),
                         n=f"{n:,}")
            else:
                text = _("± %(hw)s people for a group of %(n)s (%(pct)s %%), with 95 %% confidence",
                         hw=_fmt(width), n=f"{n:,}", pct=_fmt(100 * width / n))
            sizes.append({"n": n, "half_width": width, "text": text})
        out.append({"column": col, "func": func, "sizes": sizes})
    return out


def _budget_after(ctx: AppContext, session: Session, agreement_id: str, cost: dict[str, Any]) -> dict[str, str]:
    status = policies.read_budget(ctx.engine, session_actor(session), agreement_id)
    left = status.remaining
    eps = Fraction(repr(float(cost.get("epsilon", 0))))
    delta = Fraction(repr(float(cost.get("delta", 0))))
    return {"epsilon_now": f"{float(left.epsilon):.6g}", "delta_now": f"{float(left.delta):.3g}",
            "epsilon_after": f"{float(left.epsilon - eps):.6g}", "delta_after": f"{float(left.delta - delta):.3g}",
            "fits": str(eps <= left.epsilon and delta <= left.delta)}


async def _workspace(request: Request, session: Session, form: dict[str, str] | None = None, status: int = 200,
                     **extra: Any) -> Response:
    ags = await in_thread(_agreements, ctx_of(request), session, "query")
    return render(request, "query.html", session, status=status, agreements=ags,
                  form=form or {"sql": SQL_EXAMPLE, "epsilon": "0.5"}, form_token=secrets.token_urlsafe(24), **extra)


@router.get("/query", name="console.query")
@guarded
async def query_page(request: Request, agreement: str = "") -> Response:
    """The query workspace: SQL, ε, agreement and purpose; preview first, then submit."""
    session = await signed_in(request, *ROLES)
    return await _workspace(request, session, {"sql": SQL_EXAMPLE, "epsilon": "0.5", "agreement_id": agreement})


@router.post("/query/preview", name="console.query.preview")
@guarded
async def query_preview(request: Request) -> Response:
    """Preview a query exactly as ``POST /v1/queries/preview``: nothing spent, no data read; the answer on the
    mock, the cost, the budget left after it and the accuracy in words."""
    session = await signed_in(request, *ROLES)
    form = await posted_form(request, session)
    ctx, ev = ctx_of(request), audit_event(request)
    agreement_id = form.get("agreement_id", "")[:64]
    ev.agreement_id = agreement_id or None

    def run() -> dict[str, Any]:
        spec = _query_spec(form)
        out = jobflow.preview_query(ctx, session_actor(session), agreement_id, spec, _purpose(form))
        ag = policies.get_agreement(ctx.engine, session_actor(session), agreement_id)
        plan = prepare_for(spec, ag, jobflow.datasets_of(ctx, ag.document.datasets),
                           max_sql_chars=ctx.settings.max_sql_chars)  # memoised: the plan the preview priced
        return {"preview": out, "accuracy": accuracy_lines(plan, out["expected_error"]),
                "budget": _budget_after(ctx, session, agreement_id, out["cost"]),
                "min_group_units": plan.min_group_units}

    try:
        data = await in_thread(run)
    except DomainError as e:  # shown beside the SQL, which stays in the editor
        ev.decision, ev.code = ("error" if e.code == "INTERNAL" else "deny"), e.code
        status = errors.CATALOG[ErrorCode(e.code)][0] if e.code in errors.CATALOG else 400
        return await _workspace(request, session, form, status=status,
                                problem={"code": e.code, "message": e.message, "details": e.details or []})
    ev.dataset = data["preview"]["dataset"]
    return await _workspace(request, session, form, **data)


async def _submitted(request: Request, session: Session, kind: str, agreement_id: str, spec: dict[str, Any],
                     purpose: str | None, token: str) -> Response:
    """Submit as ``POST /v1/jobs`` under the form's job id; a form posted again shows the job it created."""
    ctx, ev = ctx_of(request), form_event(request)
    ev.agreement_id = agreement_id or None
    actor = session_actor(session)
    job_id = form_job_id(session.principal.name, token)
    ev.details["job_id"] = job_id

    def run() -> str:
        existing = load_job(ctx.engine, job_id)
        if existing is not None:
            if existing.created_by != actor.name:  # cannot happen short of a hash collision; never show it
                raise not_found("job")
            ev.details["resubmitted"] = True
            jobflow.note_job(ev, existing)
            return existing.id
        try:
            return jobflow.submit(ctx, actor, agreement_id, kind, spec, ev, purpose=purpose, job_id=job_id).id
        except IntegrityError:  # the same form, posted twice at once: the other post created the job
            if load_job(ctx.engine, job_id) is None:
                raise
            ev.details["resubmitted"] = True
            return job_id

    return redirect(f"/console/jobs/{await in_thread(run)}")


@router.post("/query/submit", name="console.query.submit")
@guarded
async def query_submit(request: Request) -> Response:
    """Submit the previewed query as a job (charged as ``POST /v1/jobs`` charges it)."""
    session = await signed_in(request, *ROLES)
    form = await posted_form(request, session)
    token = _token(form)
    return await _submitted(request, session, "query", form.get("agreement_id", "")[:64], _query_spec(form),
                            _purpose(form), token)


def _spec_from(form: dict[str, str], kind: str) -> dict[str, Any]:
    raw = form.get("spec", "").strip()
    if len(raw) > MAX_SPEC_CHARS:
        raise DomainError(INVALID_REQUEST, _("The specification is too long."), [{"field": "spec"}])
    try:
        spec = strict_json.loads(raw.encode())
    except ValueError:
        raise DomainError(INVALID_REQUEST, _("The specification is not valid JSON."), [{"field": "spec"}]) from None
    if not isinstance(spec, dict):
        raise DomainError(INVALID_REQUEST, _("The specification must be a JSON object."), [{"field": "spec"}])
    if kind == "code":
        source = form.get("source", "")
        if not source.strip():
            raise DomainError(INVALID_REQUEST, _("The code is empty."), [{"field": "source"}])
        spec["source"] = source.replace("\r\n", "\n")
    return dict(spec)


@router.get("/jobs/new/{kind}", name="console.job.new")
@guarded
async def job_new(request: Request, kind: str, agreement: str = "") -> Response:
    """The training or custom-code job form: the body of ``POST /v1/jobs`` (the owner still reviews it)."""
    session = await signed_in(request, *ROLES)
    if kind not in SPEC_EXAMPLES:
        raise not_found("job form")
    ags = await in_thread(_agreements, ctx_of(request), session, kind)
    form = {"agreement_id": agreement, "spec": json.dumps(SPEC_EXAMPLES[kind], indent=2),
            "source": CODE_EXAMPLE}
    return render(request, "job_new.html", session, kind=kind, agreements=ags, form=form,
                  form_token=secrets.token_urlsafe(24))


@router.post("/jobs/new/{kind}", name="console.job.submit")
@guarded
async def job_submit(request: Request, kind: str) -> Response:
    session = await signed_in(request, *ROLES)
    if kind not in SPEC_EXAMPLES:
        raise not_found("job form")
    form = await posted_form(request, session)
    token = _token(form)
    return await _submitted(request, session, kind, form.get("agreement_id", "")[:64], _spec_from(form, kind),
                            _purpose(form), token)


def result_csv(result: dict[str, Any]) -> str:
    """A released DP table as CSV: its columns, then for each aggregate column with an error bar the 95 %
    half-width beside it (``<column> ±95%``). Only the released result; nothing else of the job."""
    columns = list(result.get("columns") or [])
    rows = list(result.get("rows") or [])
    bars = result.get("error_bars") or {}
    header: list[str] = []
    for c in columns:
        header.append(c)
        if c in bars:
            header.append(f"{c} ±95%")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for i, row in enumerate(rows):
        line: list[Any] = []
        for c, v in zip(columns, row, strict=False):
            line.append(v)
            if c in bars:
                bar = bars[c]
                line.append(bar[i] if isinstance(bar, list) else bar)
        w.writerow([_cell(v) for v in line])
    return buf.getvalue()


def _cell(v: Any) -> Any:
    """Neutralise spreadsheet formulas (a value starting with =, +, - or @ that is not a number)."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return "" if v is None else v


@router.get("/jobs/{job_id}/result.csv", name="console.job.csv")
@guarded
async def job_csv(request: Request, job_id: str) -> Response:
    """The released result of a query job as CSV (``GET /v1/jobs/{id}/result``, same access and sealing)."""
    session = await signed_in(request)
    ctx, ev = ctx_of(request), audit_event(request)
    ev.details["job_id"] = job_id[:64]
    out = await in_thread(jobflow.job_result, ctx, session_actor(session), job_id)
    ev.output_digest = out["output_digest"]
    result = out["result"]
    if not isinstance(result, dict) or "columns" not in result or "rows" not in result:
        raise DomainError(INVALID_REQUEST, _("This job's result is not a table."), [{"reason": "result.not_table"}])
    name = re.sub(r"[^A-Za-z0-9_-]", "", job_id)[:64] or "result"
    return Response(result_csv(result), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
