"""`veilbox report …`: the monthly, quarterly and annual reports and the incident reports (regulator, data authority).

``veilbox report --quarter 2026-Q3`` (or ``--month 2026-11``, ``--year 2026``) prints the period's report as JSON,
or writes its PDF (``--pdf FILE``) or its entries as Parquet (``--parquet FILE``); a quarter's and a year's figures
are the sum of their months' (`gateway.reports`). ``veilbox report incidents [--kind KIND]`` lists the incident
reports (suspensions, disabled principals, rectification orders (整改), withdrawals, disposals: `gateway.incidents`)
and ``veilbox report incident ID [--pdf FILE]`` shows one or writes its PDF. Registered on ``veilbox report`` by
`veilbox.cli`; shares its connection, output and error conventions (`veilbox._cli_common`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

report_app = typer.Typer(help=_("Monthly, quarterly and annual reports and incident reports (regulator, data "
                                "authority)."), invoke_without_command=True)

JsonOpt = base.JsonOpt
PdfOpt = Annotated[Path | None, typer.Option("--pdf", help=_("write the PDF here"))]


def _period(month: str | None, quarter: str | None, year: str | None) -> str | None:
    given = [p for p in (month, quarter, year) if p]
    if len(given) > 1:
        raise typer.BadParameter(_("give one of --month, --quarter and --year"))
    return given[0] if given else None


def _wrote(path: Path, as_json: bool) -> None:
    if base.wants_json(as_json):
        base.emit({"wrote": str(path)}, True)
    else:
        base.out.print(_("wrote %(path)s", path=str(path)))


@report_app.callback()
def report(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option(help=_("a month, YYYY-MM (UTC)"))] = None,
    quarter: Annotated[str | None, typer.Option(help=_("a quarter, YYYY-Qn (UTC), e.g. 2026-Q3"))] = None,
    year: Annotated[str | None, typer.Option(help=_("a year, YYYY (UTC)"))] = None,
    pdf: PdfOpt = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", help=_("write the period's audit entries here as "
                                                                      "Parquet"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """The report of a month, a quarter or a year: counts per agreement, dataset and product, ε debited, chain
    status (regulator, data authority)."""
    period = _period(month, quarter, year)
    if ctx.invoked_subcommand is not None:
        if period or pdf or parquet:
            raise typer.BadParameter(_("--month, --quarter, --year, --pdf and --parquet go without a subcommand"))
        return
    if period is None:
        raise typer.BadParameter(_("give --month, --quarter or --year (or a subcommand: incidents, incident)"))
    with base.client() as c:
        if pdf is not None:
            pdf.write_bytes(c.report(period, "pdf"))
            _wrote(pdf, as_json)
        if parquet is not None:
            parquet.write_bytes(c.report(period, "parquet"))
            _wrote(parquet, as_json)
        if pdf is None and parquet is None:
            base.emit(c.report(period), True)


def _table(items: list[dict[str, Any]]) -> Table:
    t = Table(_("id"), _("kind"), _("when (UTC)"), _("by"), _("agreement"), _("dataset"), _("principal"),
              _("state"), _("deadline"))
    for i in items:
        f = i["follow_up"]
        t.add_row(i["id"], i["kind"], i["ts"][:19].replace("T", " "), i["actor"], base.cell(i["agreement_id"]),
                  base.cell(i["dataset"]), base.cell(i["principal"]), f["state"], base.cell(f["deadline"]))
    return t


@report_app.command("incidents", help=_("The incident reports, oldest first: suspensions, disabled principals, "
                                        "rectification orders (整改), withdrawals, disposals."))
def incidents(
    kind: Annotated[str | None, typer.Option(help=_("suspension | principal_suspension | rectification | "
                                                    "withdrawal | disposal | agreement_disposal"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """The incident reports, oldest first: suspensions, disabled principals, rectification orders (整改),
    withdrawals, disposals."""
    with base.client() as c:
        items = c.incidents(kind)
    base.emit(items, as_json, _table(items))


@report_app.command("incident", help=_("One incident report: what happened, to what, when, by whom, the reasons, "
                                       "the follow-up and the audit entries it is built from."))
def incident(
    incident_id: Annotated[str, typer.Argument(help=_("incident id (inc-…)"))],
    pdf: PdfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One incident report: what happened, to what, when, by whom, the reasons, the follow-up and the audit
    entries it is built from."""
    with base.client() as c:
        if pdf is not None:
            pdf.write_bytes(c.incident(incident_id, "pdf"))
            _wrote(pdf, as_json)
            return
        base.emit(c.incident(incident_id), True)


def register(app: typer.Typer) -> None:
    """Add ``veilbox report`` to the main app."""
    app.add_typer(report_app, name="report")
