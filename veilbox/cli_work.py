"""`veilbox agreement|query|job|model|negative-list`: agreements, private SQL and the job workflow from the shell.

Registered on the main app by `veilbox.cli`; shares its connection and output helpers (`veilbox._cli_common`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.jobs import QUEUED_KINDS

agreement_app = typer.Typer(help="Agreements (授权运营协议): owners propose, grantees accept; budgets and usage.",
                            no_args_is_help=True)
query_app = typer.Typer(help="Differentially private SQL under an agreement (preview spends nothing).",
                        no_args_is_help=True)
job_app = typer.Typer(help="Jobs (query, train, code): submit, review, approve or reject, release, result.",
                      no_args_is_help=True)
model_app = typer.Typer(help="Released models: cards and certificates (weights never leave).", no_args_is_help=True)
negative_app = typer.Typer(help="The negative list (负面清单) no agreement can override (admin edits).",
                           no_args_is_help=True)

JsonOpt = base.JsonOpt
AgreementArg = Annotated[str, typer.Argument(help="agreement id (agr_…)")]
JobArg = Annotated[str, typer.Argument(help="job id (job_…)")]


def _doc(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        base.err.print(f"[red]cannot read {path}:[/] {e}")
        raise typer.Exit(2) from None
    if not isinstance(data, dict):
        base.err.print(f"[red]{path} must hold a JSON object[/]")
        raise typer.Exit(2)
    return data


def _agreements_table(items: list[dict[str, Any]]) -> Table:
    t = Table("id", "title", "owner", "grantee", "state", "datasets", "approval", "valid until")
    for a in items:
        t.add_row(a["id"], a["title"], a["owner"], a["grantee"], a["state"], ",".join(a["datasets"]),
                  a["approval"], str(a["valid_until"])[:19])
    return t


@agreement_app.command("propose")
def agreement_propose(document: Annotated[Path, typer.Argument(help="JSON document as in docs/api.md, Agreements")],
                      as_json: JsonOpt = False) -> None:
    """Owner: propose an agreement over your datasets (state `proposed`)."""
    with base.client() as c:
        ag = c.propose_agreement(_doc(document))
    base.emit(ag, as_json, _agreements_table([ag]))


@agreement_app.command("list")
def agreement_list(state: Annotated[str | None, typer.Option(help="filter on the effective state")] = None,
                   as_json: JsonOpt = False) -> None:
    """Agreements you own or hold (regulators: all)."""
    with base.client() as c:
        items = c.agreements(state)
    base.emit(items, as_json, _agreements_table(items))


@agreement_app.command("show")
def agreement_show(agreement_id: AgreementArg) -> None:
    with base.client() as c:
        base.emit(c.agreement(agreement_id), True)


@agreement_app.command("accept")
def agreement_accept(agreement_id: AgreementArg, document_hash: Annotated[str | None, typer.Option(
        help="bind the acceptance to the version you read")] = None, as_json: JsonOpt = False) -> None:
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


_transition("suspend", "Owner: pause an active agreement.")
_transition("resume", "Owner: resume a suspended agreement.")
_transition("revoke", "Owner: end an agreement for good; released outputs are sealed.")


@agreement_app.command("budget")
def agreement_budget(agreement_id: AgreementArg, as_json: JsonOpt = False) -> None:
    """Total, spent and remaining (ε, δ) per dataset."""
    with base.client() as c:
        b = c.budget(agreement_id)
    t = Table("dataset", "ε spent", "ε remaining", "δ spent", "δ remaining")
    for ds, acc in b["datasets"].items():
        t.add_row(ds, acc["spent"]["epsilon"], acc["remaining"]["epsilon"], acc["spent"]["delta"],
                  acc["remaining"]["delta"])
    base.emit(b, as_json, t)


@agreement_app.command("usage")
def agreement_usage(agreement_id: AgreementArg, since: str | None = None, until: str | None = None,
                    as_json: JsonOpt = False) -> None:
    """Calls, jobs, verifications and ε per day (parties and regulators)."""
    with base.client() as c:
        u = c.usage(agreement_id, since, until)
    t = Table("day", "calls", "jobs", "verifications", "scores", "ε")
    for d in u["days"]:
        t.add_row(d["day"], str(d["calls"]), str(d["jobs"]), str(d["verifications"]), str(d["scores"]),
                  str(d["epsilon"]))
    base.emit(u, as_json, t)


def _answer_table(r: dict[str, Any]) -> Table:
    bars = r.get("error_bars") or {}
    t = Table(*[f"{c} (±{bars[c]:.3g})" if isinstance(bars.get(c), float) else c for c in r["columns"]],
              caption=f"ε {r['cost']['epsilon']} · suppressed groups {r['suppressed_groups']} · "
                      f"{r.get('output_digest', '')[:23]}…")
    for row in r["rows"]:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    return t


@query_app.command("preview")
def query_preview(agreement_id: AgreementArg, sql: str, epsilon: Annotated[str, typer.Option(
        help="ε the query would spend")] = "0.5", as_json: JsonOpt = False) -> None:
    """Canonical SQL, cost, expected error and the answer on the mock; spends nothing."""
    with base.client() as c:
        pv = c.preview_query(agreement_id, sql, epsilon)
    if as_json:
        base.emit(pv, True)
        return
    base.out.print(f"[bold]canonical SQL[/] {pv['canonical_sql']}")
    base.out.print(f"cost ε={pv['cost']['epsilon']}  expected ±95%: {pv['expected_error']}")
    base.out.print(_answer_table({**pv["mock_result"], "cost": pv["cost"], "output_digest": "mock"}))


@query_app.command("run")
def query_run(agreement_id: AgreementArg, sql: str, epsilon: Annotated[str, typer.Option(
        help="ε to spend")] = "0.5", as_json: JsonOpt = False) -> None:
    """Run a DP query: the noisy answer, or the job id when the owner must approve first."""
    with base.client() as c:
        r = c.query(agreement_id, sql, epsilon)
    if as_json or r.get("state") != "released":
        base.emit(r, True)
        return
    base.out.print(_answer_table(r))


def _jobs_table(items: list[dict[str, Any]]) -> Table:
    t = Table("id", "kind", "state", "agreement", "by", "ε", "spec hash")
    for j in items:
        t.add_row(j["id"], j["kind"], j["state"], j["agreement_id"], j["created_by"], str(j["cost"]["epsilon"]),
                  j["spec_hash"][:23] + "…")
    return t


def _job_kind(value: str) -> str:
    """A kind that can be submitted as a job (`vocab.jobs.QUEUED_KINDS`), else a usage error before any request."""
    if value not in QUEUED_KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(QUEUED_KINDS)}")
    return value


@job_app.command("submit")
def job_submit(agreement_id: AgreementArg,
               kind: Annotated[str, typer.Option(callback=_job_kind, help=" | ".join(QUEUED_KINDS))],
               spec: Annotated[Path, typer.Option(help="JSON spec file (docs/api.md, Jobs)")],
               source: Annotated[Path | None, typer.Option(help="code jobs: Python file put into spec.source")] = None,
               as_json: JsonOpt = False) -> None:
    """Grantee: submit a job; it waits for the owner unless the agreement auto-approves."""
    body = _doc(spec)
    if source is not None:
        body["source"] = source.read_text()
    with base.client() as c:
        j = c.submit_job(agreement_id, kind, body)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("list")
def job_list(state: Annotated[str | None, typer.Option(help="e.g. pending_approval")] = None,
             as_json: JsonOpt = False) -> None:
    """Owners: jobs on their data; grantees: their own."""
    with base.client() as c:
        items = c.jobs(state)
    base.emit(items, as_json, _jobs_table(items))


@job_app.command("show")
def job_show(job_id: JobArg) -> None:
    with base.client() as c:
        base.emit(c.job(job_id), True)


@job_app.command("review")
def job_review(job_id: JobArg) -> None:
    """The exact spec, its hash, the cost and the run on the mock (owners also see pending outputs)."""
    with base.client() as c:
        base.emit(c.job_review(job_id), True)


@job_app.command("approve")
def job_approve(job_id: JobArg, spec_hash: Annotated[str, typer.Option(
        help="the spec hash you reviewed (from `job review`)")], as_json: JsonOpt = False) -> None:
    """Owner: approve the reviewed spec; the budget is charged now."""
    with base.client() as c:
        j = c.approve_job(job_id, spec_hash)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("reject")
def job_reject(job_id: JobArg, reason: Annotated[str, typer.Option(help="shown to the grantee")],
               as_json: JsonOpt = False) -> None:
    """Owner: reject a pending job or refuse a custom job's output."""
    with base.client() as c:
        j = c.reject_job(job_id, reason)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("release")
def job_release(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """Owner: release a finished custom job's output after reviewing it."""
    with base.client() as c:
        j = c.release_job(job_id)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("cancel")
def job_cancel(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """Grantee: withdraw a job that has not started (refunded)."""
    with base.client() as c:
        j = c.cancel_job(job_id)
    base.emit(j, as_json, _jobs_table([j]))


@job_app.command("result")
def job_result(job_id: JobArg, wait: Annotated[float, typer.Option(help="seconds to wait for release")] = 0) -> None:
    """The released output (grantee)."""
    with base.client() as c:
        if wait > 0:
            c.wait_job(job_id, timeout=wait)
        base.emit(c.job_result(job_id), True)


@model_app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    """Every released model with its certificate."""
    with base.client() as c:
        items = c.models()
    t = Table("id", "certificate", "algorithm", "purpose", "features", "valid until", "trained by")
    for m in items:
        t.add_row(m["id"], m["certificate"]["id"], m["algorithm"], m["purpose"] or "", ",".join(m["features"]),
                  m["certificate"]["valid_until"][:10], m["trained_by"])
    base.emit(items, as_json, t)


@model_app.command("show")
def model_show(model_id: str) -> None:
    """One model's card: encoding, DP guarantee, metrics, source datasets, certificate."""
    with base.client() as c:
        base.emit(c.model(model_id), True)


@negative_app.command("list")
def negative_list(as_json: JsonOpt = False) -> None:
    with base.client() as c:
        items = c.negative_list()
    t = Table("id", "kind", "value", "note")
    for e in items:
        t.add_row(e["id"], e["kind"], e["value"], e.get("note", ""))
    base.emit(items, as_json, t)


@negative_app.command("add")
def negative_add(kind: Annotated[str, typer.Argument(help="dataset | column | purpose")],
                 value: Annotated[str, typer.Argument(help="dataset, dataset.column or purpose")],
                 note: str = "") -> None:
    with base.client() as c:
        base.emit(c.add_negative(kind, value, note), True)


@negative_app.command("remove")
def negative_remove(entry_id: str) -> None:
    with base.client() as c:
        c.remove_negative(entry_id)
    base.out.print(f"removed {entry_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(agreement_app, name="agreement")
    app.add_typer(query_app, name="query")
    app.add_typer(job_app, name="job")
    app.add_typer(model_app, name="model")
    app.add_typer(negative_app, name="negative-list")
