"""`veilbox agreement|query|job|model|negative-list`: agreements, private SQL and the job workflow from the shell.

Registered on the main app by `veilbox.cli`; shares its connection, output, id-prefix and error conventions
(`veilbox._cli_common`). Query answers and job results are tables with each noisy value's 95% interval; `--json`
gives the gateway's answer unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _
from vocab.jobs import QUEUED_KINDS

agreement_app = typer.Typer(
    help=_("Agreements (授权运营协议): owners propose, grantees accept; budgets and usage."), no_args_is_help=True
)
query_app = typer.Typer(
    help=_("Differentially private SQL under an agreement (preview spends nothing)."), no_args_is_help=True
)
job_app = typer.Typer(
    help=_("Jobs (query, train, code): submit, review, approve or reject, release, result."), no_args_is_help=True
)
model_app = typer.Typer(help=_("Released models: cards and certificates (weights never leave)."), no_args_is_help=True)
negative_app = typer.Typer(
    help=_("The negative list (负面清单) no agreement can override (admin edits)."), no_args_is_help=True
)

JsonOpt = base.JsonOpt
AgreementArg = base.AgreementArg
JobArg = base.JobArg
IdOnlyOpt = Annotated[bool, typer.Option("--id-only", help=_("print only the id (for `ID=$(veilbox …)`)"))]
_doc = base.read_json


def _agreements_table(items: list[dict[str, Any]]) -> Table:
    t = Table("id", "title", "owner", "grantee", "state", "datasets", "approval", "valid until")
    for a in items:
        t.add_row(
            a["id"],
            a["title"],
            a["owner"],
            a["grantee"],
            a["state"],
            ",".join(a["datasets"]),
            a["approval"],
            str(a["valid_until"])[:19],
        )
    return t


@agreement_app.command("propose", help=_("Owner: propose an agreement over your datasets (state `proposed`)."))
def agreement_propose(
    document: Annotated[Path, typer.Argument(help=_("JSON document as in docs/api.md, Agreements"))],
    as_json: JsonOpt = False,
    id_only: IdOnlyOpt = False,
) -> None:
    """Owner: propose an agreement over your datasets (state `proposed`)."""
    body = _doc(document)
    with base.client() as c:
        ag = c.propose_agreement(body)
    _agreement_out(ag, as_json, id_only)


@agreement_app.command(
    "template", help=_("Print a complete example agreement document (every field) that `propose` accepts as is.")
)
def agreement_template(
    owner: Annotated[str, typer.Option(help=_("the owner proposing it (its revenue share)"))] = "city-tax-bureau",
    grantee: Annotated[str, typer.Option(help=_("the principal granted access"))] = "risk-lab",
    dataset: Annotated[str, typer.Option(help=_("the dataset granted"))] = "tax_income",
    columns: Annotated[str, typer.Option(help=_("the dataset's columns granted, comma-separated"))] = "district,age",
    purpose: Annotated[list[str] | None, typer.Option(help=_("a purpose (repeatable)"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a complete example agreement document (docs/agreements.md explains each field); with ``--json`` on
    one line, else indented (both are the same JSON document)."""
    from policies.agreements.template import example_document

    cols = [c.strip() for c in columns.split(",") if c.strip()]
    doc = example_document(owner=owner, grantee=grantee, columns={dataset: cols}, purposes=purpose or ["credit_risk"])
    print(json.dumps(doc, ensure_ascii=False, indent=None if base.wants_json(as_json) else 2))


@agreement_app.command(
    "amend", help=_("Owner: replace a proposed agreement's document; it is `proposed` again until the grantee accepts.")
)
def agreement_amend(
    agreement_id: AgreementArg,
    document: Annotated[Path, typer.Argument(help=_("the whole new JSON document (docs/api.md)"))],
    as_json: JsonOpt = False,
    id_only: IdOnlyOpt = False,
) -> None:
    """Owner: replace a proposed agreement's document; it is `proposed` again until the grantee accepts."""
    body = _doc(document)
    with base.client() as c:
        ag = c.amend_agreement(agreement_id, body)
    _agreement_out(ag, as_json, id_only)


def _agreement_out(ag: dict[str, Any], as_json: bool, id_only: bool) -> None:
    if id_only:
        print(ag["id"])
    else:
        base.emit(ag, as_json, _agreements_table([ag]))


@agreement_app.command("list", help=_("Agreements you own or hold (regulators: all)."))
def agreement_list(
    state: Annotated[str | None, typer.Option(help=_("filter on the effective state"))] = None, as_json: JsonOpt = False
) -> None:
    """Agreements you own or hold (regulators: all)."""
    with base.client() as c:
        items = c.agreements(state)
    base.emit(items, as_json, _agreements_table(items))


@agreement_app.command("show", help=_("One agreement: its document, state, version and document hash."))
def agreement_show(agreement_id: AgreementArg, as_json: JsonOpt = False) -> None:
    """One agreement: its document, state, version and document hash."""
    with base.client() as c:
        ag = c.agreement(agreement_id)
    base.emit(ag, as_json, base.fields_table(ag, title=ag["id"]))


@agreement_app.command(
    "accept", help=_("Grantee: accept a proposed agreement (it becomes active inside its validity window).")
)
def agreement_accept(
    agreement_id: AgreementArg,
    document_hash: Annotated[str | None, typer.Option(help=_("bind the acceptance to the version you read"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grantee: accept a proposed agreement (it becomes active inside its validity window)."""
    with base.client() as c:
        ag = c.accept_agreement(agreement_id, document_hash)
    base.emit(ag, as_json, _agreements_table([ag]))


def _transition(name: str, doc: str) -> None:
    def cmd(agreement_id: AgreementArg, as_json: JsonOpt = False) -> None:
        with base.client() as c:
            ag = getattr(c, f"{name}_agreement")(agreement_id)
        base.emit(ag, as_json, _agreements_table([ag]))

    cmd.__doc__ = doc
    agreement_app.command(name)(cmd)


_transition("suspend", _("Owner: pause an active agreement."))
_transition("resume", _("Owner: resume a suspended agreement."))
_transition("revoke", _("Owner: end an agreement for good; released outputs are sealed."))
_transition("submit", _("Owner: submit an accepted (or returned) agreement to the data authority for filing (备案)."))
_transition("activate", _("Owner: activate a filed agreement."))


@agreement_app.command("budget", help=_("Total, spent and remaining (ε, δ) per dataset."))
def agreement_budget(agreement_id: AgreementArg, as_json: JsonOpt = False) -> None:
    """Total, spent and remaining (ε, δ) per dataset."""
    with base.client() as c:
        b = c.budget(agreement_id)
    t = Table("dataset", "ε spent", "ε remaining", "δ spent", "δ remaining")
    for ds, acc in b["datasets"].items():
        t.add_row(
            ds, acc["spent"]["epsilon"], acc["remaining"]["epsilon"], acc["spent"]["delta"], acc["remaining"]["delta"]
        )
    base.emit(b, as_json, t)


@agreement_app.command("usage", help=_("Calls, jobs, verifications and ε per day (parties and regulators)."))
def agreement_usage(
    agreement_id: AgreementArg,
    since: Annotated[str | None, typer.Option(help=_("first day, YYYY-MM-DD (UTC)"))] = None,
    until: Annotated[str | None, typer.Option(help=_("last day, YYYY-MM-DD (UTC)"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Calls, jobs, verifications and ε per day (parties and regulators)."""
    with base.client() as c:
        u = c.usage(agreement_id, since, until)
    t = Table("day", "calls", "jobs", "verifications", "scores", "ε")
    for d in u["days"]:
        t.add_row(
            d["day"], str(d["calls"]), str(d["jobs"]), str(d["verifications"]), str(d["scores"]), str(d["epsilon"])
        )
    base.emit(u, as_json, t)


def _answer_table(r: dict[str, Any]) -> Table:
    """A DP answer: one column per output column; a noisy value is shown with its 95% interval (value ± bar)."""
    bars = r.get("error_bars") or {}
    cols = list(r["columns"])
    headers = [_("%(col)s (95%% interval)", col=c) if isinstance(bars.get(c), int | float) else c for c in cols]
    cost = r.get("cost") or {}
    caption = _("ε %(eps)s · suppressed groups %(n)s", eps=cost.get("epsilon", "?"), n=r.get("suppressed_groups", 0))
    t = Table(*headers, caption=caption)
    for row in r["rows"]:
        cells = []
        for c, v in zip(cols, row, strict=False):
            bar = bars.get(c)
            if isinstance(v, int | float) and isinstance(bar, int | float):
                cells.append(f"{v:.6g} [{v - bar:.6g}, {v + bar:.6g}]")
            else:
                cells.append(base.cell(v))
        t.add_row(*cells)
    return t


SqlArg = Annotated[str, typer.Argument(help=_("the SQL (one SELECT over the agreement's datasets and columns)"))]


def _print_answer(r: dict[str, Any]) -> None:
    base.out.print(_answer_table(r))
    if r.get("output_digest"):
        base.out.print(_("output digest: %(digest)s", digest=r["output_digest"]), soft_wrap=True)
    for s in r.get("source") or []:  # the data sources every released output names (docs/certificates.md)
        line = _("source: %(dataset)s, supplied by %(owner)s, fingerprint %(fingerprint)s", **s)
        base.out.print(line, soft_wrap=True)
    if r.get("certificate_id"):
        base.out.print(_("certificate: %(id)s", id=r["certificate_id"]), soft_wrap=True)


@query_app.command("preview", help=_("Canonical SQL, cost, expected error and the answer on the mock; spends nothing."))
def query_preview(
    agreement_id: AgreementArg,
    sql: SqlArg,
    epsilon: Annotated[str, typer.Option(help=_("ε the query would spend"))] = "0.5",
    as_json: JsonOpt = False,
) -> None:
    """Canonical SQL, cost, expected error and the answer on the mock; spends nothing."""
    with base.client() as c:
        pv = c.preview_query(agreement_id, sql, epsilon)
    if base.wants_json(as_json):
        base.emit(pv, True)
        return
    base.out.print(_("canonical SQL: %(sql)s", sql=pv["canonical_sql"]))
    base.out.print(_("cost ε=%(eps)s  expected ±95%%: %(err)s", eps=pv["cost"]["epsilon"], err=pv["expected_error"]))
    base.out.print(_answer_table({**pv["mock_result"], "cost": pv["cost"]}))


@query_app.command("run", help=_("Run a DP query: the noisy answer, or the job id when the owner must approve first."))
def query_run(
    agreement_id: AgreementArg,
    sql: SqlArg,
    epsilon: Annotated[str, typer.Option(help=_("ε to spend"))] = "0.5",
    as_json: JsonOpt = False,
    id_only: Annotated[bool, typer.Option("--id-only", help=_("print only the job id (for `JOB=$(…)`)"))] = False,
) -> None:
    """Run a DP query: the noisy answer, or the job id when the owner must approve first."""
    with base.client() as c:
        r = c.query(agreement_id, sql, epsilon)
    if id_only:
        print(r.get("job_id", ""))
    elif base.wants_json(as_json):
        base.emit(r, True)
    elif r.get("state") == "released" and "rows" in r:
        _print_answer(r)
    else:
        base.out.print(base.fields_table(r))
        if r.get("state") == "pending_approval":
            base.out.print(
                _(
                    "the owner must approve job %(job)s (`veilbox job review` / `job approve`); then "
                    "`veilbox job result %(job)s --wait 60`",
                    job=r.get("job_id", ""),
                )
            )


def _jobs_table(items: list[dict[str, Any]]) -> Table:
    t = Table("id", "kind", "state", "agreement", "by", "ε", "spec hash")
    for j in items:
        t.add_row(
            j["id"],
            j["kind"],
            j["state"],
            j["agreement_id"],
            j["created_by"],
            str(j["cost"]["epsilon"]),
            j["spec_hash"],
        )
    return t


def _job_kind(value: str) -> str:
    """A kind that can be submitted as a job (`vocab.jobs.QUEUED_KINDS`), else a usage error before any request."""
    if value not in QUEUED_KINDS:
        raise typer.BadParameter(_("must be one of %(kinds)s", kinds=", ".join(QUEUED_KINDS)))
    return value


@job_app.command("submit", help=_("Grantee: submit a job; it waits for the owner unless the agreement auto-approves."))
def job_submit(
    agreement_id: AgreementArg,
    kind: Annotated[str, typer.Option(callback=_job_kind, help=" | ".join(QUEUED_KINDS))],
    spec: Annotated[Path, typer.Option(help=_("JSON spec file (docs/api.md, Jobs)"))],
    source: Annotated[Path | None, typer.Option(help=_("code jobs: Python file put into spec.source"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grantee: submit a job; it waits for the owner unless the agreement auto-approves."""
    body = _doc(spec)
    if source is not None:
        try:
            body["source"] = source.read_text()
        except OSError as e:
            raise base.CliError(
                _("cannot read %(path)s: %(cause)s", path=str(source), cause=e.strerror or str(e)), _("check the path")
            ) from None
    with base.client() as c:
        j = c.submit_job(agreement_id, kind, body)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("list", help=_("Owners: jobs on their data; grantees: their own."))
def job_list(
    state: Annotated[str | None, typer.Option(help=_("e.g. pending_approval"))] = None, as_json: JsonOpt = False
) -> None:
    """Owners: jobs on their data; grantees: their own."""
    with base.client() as c:
        items = c.jobs(state)
    base.emit(items, as_json, _jobs_table(items))


@job_app.command("show", help=_("One job: kind, state, agreement, cost and spec hash."))
def job_show(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """One job: kind, state, agreement, cost and spec hash."""
    with base.client() as c:
        j = c.job(job_id)
    base.emit(j, as_json, base.fields_table(j, title=j["id"]))


@job_app.command(
    "review", help=_("The exact spec, its hash, the cost and the run on the mock (owners also see pending outputs).")
)
def job_review(
    job_id: JobArg,
    as_json: JsonOpt = False,
    spec_hash_only: Annotated[
        bool, typer.Option("--spec-hash-only", help=_('print only the spec hash to approve (for `--spec-hash "$(…)"`)'))
    ] = False,
) -> None:
    """The exact spec, its hash, the cost and the run on the mock (owners also see pending outputs)."""
    with base.client() as c:
        rv = c.job_review(job_id)
    if spec_hash_only:
        print(rv["job"]["spec_hash"])
        return
    if base.wants_json(as_json):
        base.emit(rv, True)
        return
    base.out.print(base.fields_table(rv["job"], title=rv["job"]["id"]))
    plan, mock = rv.get("plan") or {}, rv.get("mock") or {}
    if plan.get("canonical_sql"):
        base.out.print(_("canonical SQL: %(sql)s", sql=plan["canonical_sql"]), soft_wrap=True)
    if plan.get("expected_error"):
        base.out.print(_("expected ±95%%: %(err)s", err=plan["expected_error"]))
    if isinstance(mock.get("mock_result"), dict):
        base.out.print(_("the run on the mock (synthetic rows, never the data):"))
        base.out.print(_answer_table({**mock["mock_result"], "cost": mock.get("cost") or plan.get("cost") or {}}))
    rest = {k: v for k, v in rv.items() if k not in ("job", "plan", "mock")}
    rest |= {f"plan.{k}": v for k, v in plan.items() if k not in ("canonical_sql", "expected_error")}
    rest |= {f"mock.{k}": v for k, v in mock.items() if k not in ("canonical_sql", "mock_result", "cost")}
    if rest:
        base.out.print(base.fields_table(rest, title=_("review")))
    base.out.print(
        _(
            "approve exactly this spec: veilbox job approve %(job)s --spec-hash %(hash)s",
            job=rv["job"]["id"],
            hash=rv["job"]["spec_hash"],
        )
    )


@job_app.command("approve", help=_("Owner: approve the reviewed spec; the budget is charged now."))
def job_approve(
    job_id: JobArg,
    spec_hash: Annotated[str, typer.Option(help=_("the spec hash you reviewed (from `job review`)"))],
    as_json: JsonOpt = False,
) -> None:
    """Owner: approve the reviewed spec; the budget is charged now."""
    with base.client() as c:
        j = c.approve_job(job_id, spec_hash)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("reject", help=_("Owner: reject a pending job or refuse a custom job's output."))
def job_reject(
    job_id: JobArg, reason: Annotated[str, typer.Option(help=_("shown to the grantee"))], as_json: JsonOpt = False
) -> None:
    """Owner: reject a pending job or refuse a custom job's output."""
    with base.client() as c:
        j = c.reject_job(job_id, reason)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("release", help=_("Owner: release a finished custom job's output after reviewing it."))
def job_release(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """Owner: release a finished custom job's output after reviewing it."""
    with base.client() as c:
        j = c.release_job(job_id)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("cancel", help=_("Grantee: withdraw a job that has not started (refunded)."))
def job_cancel(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """Grantee: withdraw a job that has not started (refunded)."""
    with base.client() as c:
        j = c.cancel_job(job_id)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command(
    "result", help=_("The released output (grantee): a query's table with 95% intervals, or the job's output fields.")
)
def job_result(
    job_id: JobArg,
    wait: Annotated[float, typer.Option(help=_("seconds to wait for release"))] = 0,
    as_json: JsonOpt = False,
) -> None:
    """The released output (grantee): a query's table with 95% intervals, or the job's output fields."""
    with base.client() as c:
        if wait > 0:
            try:
                c.wait_job(job_id, timeout=wait)
            except TimeoutError:
                raise base.CliError(
                    _("job %(job)s is not finished after %(s)s s", job=job_id, s=wait),
                    _("wait longer (--wait) or check it with `veilbox job show %(job)s`", job=job_id),
                    code=base.EXIT_NOT_READY,
                ) from None
        res = c.job_result(job_id)
    if base.wants_json(as_json):
        base.emit(res, True)
        return
    result = res.get("result")
    if isinstance(result, dict) and "columns" in result and "rows" in result:
        _print_answer(result)
    else:
        base.out.print(base.fields_table(res, title=job_id))


ModelArg = Annotated[str, typer.Argument(help=_("model id (from `veilbox model list`)"))]


@model_app.command("list", help=_("Every released model with its certificate."))
def model_list(as_json: JsonOpt = False) -> None:
    """Every released model with its certificate."""
    with base.client() as c:
        items = c.models()
    t = Table("id", "certificate", "algorithm", "purpose", "features", "valid until", "trained by")
    for m in items:
        t.add_row(
            m["id"],
            m["certificate"]["id"],
            m["algorithm"],
            m["purpose"] or "",
            ",".join(m["features"]),
            m["certificate"]["valid_until"][:10],
            m["trained_by"],
        )
    base.emit(items, as_json, t)


@model_app.command("show", help=_("One model's card: encoding, DP guarantee, metrics, source datasets, certificate."))
def model_show(model_id: ModelArg, as_json: JsonOpt = False) -> None:
    """One model's card: encoding, DP guarantee, metrics, source datasets, certificate."""
    with base.client() as c:
        m = c.model(model_id)
    base.emit(m, as_json, base.fields_table(m, title=model_id))


@negative_app.command("list", help=_("Every entry of the negative list (everyone may read it)."))
def negative_list(as_json: JsonOpt = False) -> None:
    """Every entry of the negative list (everyone may read it)."""
    with base.client() as c:
        items = c.negative_list()
    t = Table("id", "kind", "value", "note")
    for e in items:
        t.add_row(e["id"], e["kind"], e["value"], e.get("note", ""))
    base.emit(items, as_json, t)


@negative_app.command("add", help=_("Admin: forbid a dataset, a column or a purpose for every agreement."))
def negative_add(
    kind: Annotated[str, typer.Argument(help=_("dataset | column | purpose"))],
    value: Annotated[str, typer.Argument(help=_("dataset, dataset.column or purpose"))],
    note: Annotated[str, typer.Option(help=_("why it is forbidden (shown with refusals)"))] = "",
    as_json: JsonOpt = False,
) -> None:
    """Admin: forbid a dataset, a column or a purpose for every agreement."""
    with base.client() as c:
        e = c.add_negative(kind, value, note)
    base.emit(e, as_json, base.fields_table(e))


@negative_app.command("remove", help=_("Admin: remove an entry from the negative list."))
def negative_remove(
    entry_id: Annotated[str, typer.Argument(help=_("entry id (from `veilbox negative-list list`)"))],
    as_json: JsonOpt = False,
) -> None:
    """Admin: remove an entry from the negative list."""
    with base.client() as c:
        c.remove_negative(entry_id)
    if base.wants_json(as_json):
        base.emit({"removed": entry_id}, True)
    else:
        base.out.print(_("removed %(id)s", id=entry_id))


def register(app: typer.Typer) -> None:
    app.add_typer(agreement_app, name="agreement")
    app.add_typer(query_app, name="query")
    app.add_typer(job_app, name="job")
    app.add_typer(model_app, name="model")
    app.add_typer(negative_app, name="negative-list")
