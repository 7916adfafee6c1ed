"""`veilbox statement …` and `veilbox agreement sign|signatures`: revenue statements (收益分成) and multi-owner
signing (docs/revenue.md).

``veilbox statement agreement ID --month YYYY-MM [--format json|csv|pdf] [--out FILE]`` and ``veilbox statement
owner --month YYYY-MM [--owner NAME]`` show a monthly statement or write its CSV/PDF; ``veilbox agreement sign ID``
signs the caller's part of a multi-owner agreement (bound to the document hash it reads first, or ``--hash``).
Registered by `veilbox.cli`; shares its connection, output and error conventions (`veilbox._cli_common`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

statement_app = typer.Typer(help=_("Monthly revenue statements (收益分成): per agreement and per owner."),
                            no_args_is_help=True)

JsonOpt = base.JsonOpt
AgreementArg = base.AgreementArg
MonthOpt = Annotated[str, typer.Option("--month", help=_("the month, YYYY-MM (UTC)"))]
FormatOpt = Annotated[str, typer.Option("--format", help=_("json | csv | pdf"))]
OutOpt = Annotated[Path | None, typer.Option("--out", help=_("write the CSV or PDF here (default: CSV to stdout)"))]


def _write(data: bytes, fmt: str, out: Path | None, as_json: bool) -> None:
    if out is not None:
        out.write_bytes(data)
        if base.wants_json(as_json):
            base.emit({"wrote": str(out)}, True)
        else:
            base.out.print(_("wrote %(path)s", path=str(out)))
    elif fmt == "csv":
        sys.stdout.write(data.decode())
    else:
        raise typer.BadParameter(_("a PDF needs --out FILE"))


def _check_format(fmt: str) -> None:
    if fmt not in ("json", "csv", "pdf"):
        raise typer.BadParameter(_("--format is json, csv or pdf"))


@statement_app.command("agreement", help=_("An agreement's monthly statement: usage, charges and each owner's part."))
def statement_agreement(agreement_id: AgreementArg, month: MonthOpt, fmt: FormatOpt = "json", out: OutOpt = None,
                        as_json: JsonOpt = False) -> None:
    """An agreement's monthly statement: usage, charges and each owner's part."""
    _check_format(fmt)
    with base.client() as c:
        data: Any = c.statement(agreement_id, month, fmt)
    if fmt != "json":
        _write(data, fmt, out, as_json)
        return
    t = Table(_("line"), _("quantity"), _("exact"), _("amount"), title=f"{data['agreement_id']} {data['month']} "
                                                                         f"{data['currency'] or ''}")
    for line in data["lines"]:
        t.add_row(line["line"], str(line["quantity"]), line["exact"], line["amount"])
    t.add_row(_("total"), "", data["total"]["exact"], data["total"]["amount"])
    for o in data["owners"]:
        t.add_row(_("owner %(owner)s", owner=o["owner"]), o["weight"], "", o["amount"])
    base.emit(data, as_json, t)


@statement_app.command("owner", help=_("An owner's monthly statement: its part of every agreement over its data."))
def statement_owner(month: MonthOpt,
                    owner: Annotated[str | None, typer.Option(help=_("the owner (data authority and regulators)"))]
                    = None,
                    fmt: FormatOpt = "json", out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """An owner's monthly statement: its part of every agreement over its data."""
    _check_format(fmt)
    with base.client() as c:
        data: Any = c.owner_statement(month, owner, fmt)
    if fmt != "json":
        _write(data, fmt, out, as_json)
        return
    t = Table(_("agreement"), _("currency"), _("share"), _("agreement total"), _("amount"),
              title=f"{data['owner']} {data['month']}")
    for e in data["agreements"]:
        t.add_row(e["agreement_id"], e["currency"] or "-", e["weight"], e["agreement_total"], e["amount"])
    for tot in data["totals"]:
        t.add_row(_("total"), tot["currency"], "", "", tot["amount"])
    base.emit(data, as_json, t)


def agreement_sign(agreement_id: AgreementArg,
                   document_hash: Annotated[str | None, typer.Option("--hash", help=_(
                       "the document hash you sign (default: the agreement's current one, read first)"))] = None,
                   as_json: JsonOpt = False) -> None:
    """Co-owner: sign your part of a multi-owner agreement, bound to its document hash."""
    with base.client() as c:
        h = document_hash or c.agreement(agreement_id)["document_hash"]
        sig = c.sign_agreement(agreement_id, h)
    base.emit(sig, as_json, base.fields_table(sig, title=agreement_id))


def agreement_signatures(agreement_id: AgreementArg, as_json: JsonOpt = False) -> None:
    """The co-owners' signatures of a multi-owner agreement."""
    with base.client() as c:
        sigs = c.agreement_signatures(agreement_id)
    t = Table(_("owner"), _("version"), _("datasets"), _("signed at"), _("current"))
    for s in sigs:
        t.add_row(s["owner"], str(s["version"]), ", ".join(s["datasets"]), s["signed_at"][:19],
                  _("yes") if s["current"] else _("no"))
    base.emit(sigs, as_json, t)


def register(app: typer.Typer, agreement_app: typer.Typer) -> None:
    """Add ``veilbox statement`` to the main app and ``sign``/``signatures`` to ``veilbox agreement``."""
    app.add_typer(statement_app, name="statement")
    agreement_app.command("sign", help=_("Co-owner: sign your part of a multi-owner agreement (bound to its "
                                         "document hash)."))(agreement_sign)
    agreement_app.command("signatures", help=_("The co-owners' signatures of a multi-owner agreement."))(
        agreement_signatures)
