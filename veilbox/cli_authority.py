"""`veilbox authority …`: the data authority (数据主管部门) files (备案) or refuses agreements under review, suspends
and resumes any agreement, issues and closes rectification orders (整改), and disables or enables any principal.

Registered on ``veilbox authority`` by `veilbox.cli`; shares its connection, output, id-prefix and error
conventions (`veilbox._cli_common`). The owner's steps (``veilbox agreement submit|activate``) live with the other
agreement commands. Lifecycle and rules: docs/agreements.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

authority_app = typer.Typer(
    help=_("The data authority (数据主管部门): filing (备案), suspension, rectification orders (整改), principals."),
    no_args_is_help=True,
)

JsonOpt = base.JsonOpt
AgreementArg = base.AgreementArg
HashOpt = Annotated[str, typer.Option("--document-hash",
                                       help=_("the document hash you reviewed (veilbox agreement show)"))]
ReasonsOpt = Annotated[list[str] | None, typer.Option("--reason", help=_("a reason (repeat for several)"))]
WhyOpt = Annotated[str, typer.Option("--reason", help=_("why (recorded in the audit log)"))]


def _agreement_row(ag: dict[str, Any]) -> Table:
    t = Table(_("id"), _("state"), _("filing number"), _("suspended by"))
    t.add_row(ag["id"], ag["state"], ag.get("filing_number") or "-", ag.get("suspended_by") or "-")
    return t


def _orders_table(items: list[dict[str, Any]]) -> Table:
    t = Table(_("id"), _("open"), _("deadline"), _("text"), _("closed by"))
    for o in items:
        t.add_row(o["id"], _("yes") if o["open"] else _("no"), str(o["deadline"])[:10], o["text"],
                  o["closed_by"] or "-")
    return t


@authority_app.command("file", help=_("File an agreement under review: your sign-off on the version you read, and its "
                                      "filing number."))
def file_(agreement_id: AgreementArg, document_hash: HashOpt, reason: ReasonsOpt = None,
          as_json: JsonOpt = False) -> None:
    """File an agreement under review: your sign-off on the version you read, and its filing number."""
    with base.client() as c:
        ag = c.file_agreement(agreement_id, document_hash, reason or [])
    base.emit(ag, as_json, _agreement_row(ag))


@authority_app.command("refuse", help=_("Return an agreement under review to its owner, with the reasons."))
def refuse(agreement_id: AgreementArg, document_hash: HashOpt,
           reason: Annotated[list[str], typer.Option("--reason", help=_("a reason (required; repeat for several)"))],
           as_json: JsonOpt = False) -> None:
    """Return an agreement under review to its owner, with the reasons."""
    with base.client() as c:
        ag = c.refuse_agreement(agreement_id, document_hash, reason)
    base.emit(ag, as_json, _agreement_row(ag))


@authority_app.command("reviewers", help=_("Name the reviewers (专家委员会, 网信) whose approval filing requires "
                                           "(replaces the earlier list; none: no named reviewer)."))
def reviewers(agreement_id: AgreementArg,
              name: Annotated[list[str] | None, typer.Argument(help=_("principals with role reviewer"))] = None,
              as_json: JsonOpt = False) -> None:
    """Name the reviewers whose approval filing requires."""
    with base.client() as c:
        ag = c.require_reviewers(agreement_id, name or [])
    base.emit(ag, as_json, _agreement_row(ag))


@authority_app.command("review", help=_("A named reviewer's sign-off on the version under review: --approve, or "
                                        "--refuse with reasons (back to the owner)."))
def review(agreement_id: AgreementArg, document_hash: HashOpt,
           approve: Annotated[bool, typer.Option("--approve/--refuse", help=_("your verdict"))],
           reason: ReasonsOpt = None, as_json: JsonOpt = False) -> None:
    """A named reviewer's sign-off on the version under review."""
    with base.client() as c:
        ag = c.review_agreement(agreement_id, "approve" if approve else "refuse", document_hash, reason or [])
    base.emit(ag, as_json, _agreement_row(ag))


@authority_app.command("reviews", help=_("The sign-offs of an agreement's reviews: who, verdict, reasons, the document "
                                         "hash reviewed."))
def reviews(agreement_id: AgreementArg, as_json: JsonOpt = False) -> None:
    """The sign-offs of an agreement's reviews: who, verdict, reasons, the document hash reviewed."""
    with base.client() as c:
        items = c.agreement_reviews(agreement_id)
    t = Table(_("at"), _("reviewer"), _("verdict"), _("reasons"), _("document hash"))
    for s in items:
        t.add_row(str(s["at"])[:19], s["reviewer"], s["verdict"], "; ".join(s["reasons"]), s["document_hash"])
    base.emit(items, as_json, t)


@authority_app.command("suspend", help=_("Suspend any agreement (every call is refused; only the authority resumes "
                                         "it)."))
def suspend(agreement_id: AgreementArg, reason: WhyOpt, as_json: JsonOpt = False) -> None:
    """Suspend any agreement (every call is refused; only the authority resumes it)."""
    with base.client() as c:
        ag = c.authority_suspend(agreement_id, reason)
    base.emit(ag, as_json, _agreement_row(ag))


@authority_app.command("resume", help=_("Lift the authority's suspension of an agreement."))
def resume(agreement_id: AgreementArg, reason: WhyOpt, as_json: JsonOpt = False) -> None:
    """Lift the authority's suspension of an agreement."""
    with base.client() as c:
        ag = c.authority_resume(agreement_id, reason)
    base.emit(ag, as_json, _agreement_row(ag))


@authority_app.command("order", help=_("Issue a rectification order (整改): listed on every refusal under the "
                                       "agreement until closed."))
def order(agreement_id: AgreementArg,
          text: Annotated[str, typer.Option("--text", help=_("what must be rectified"))],
          deadline: Annotated[str, typer.Option("--deadline", help=_("by when, ISO-8601 (2027-01-15T00:00:00Z)"))],
          as_json: JsonOpt = False) -> None:
    """Issue a rectification order (整改): listed on every refusal under the agreement until closed."""
    with base.client() as c:
        o = c.issue_order(agreement_id, text, deadline)
    base.emit(o, as_json, _orders_table([o]))


@authority_app.command("orders", help=_("An agreement's rectification orders, newest first (parties and regulators may "
                                        "read them too)."))
def orders(agreement_id: AgreementArg, as_json: JsonOpt = False) -> None:
    """An agreement's rectification orders, newest first (parties and regulators may read them too)."""
    with base.client() as c:
        items = c.orders(agreement_id)
    base.emit(items, as_json, _orders_table(items))


@authority_app.command("close-order", help=_("Close a rectification order."))
def close_order(order_id: Annotated[str, typer.Argument(help=_("order id (ord_…)"))],
                note: Annotated[str, typer.Option("--note", help=_("how it was rectified"))] = "",
                as_json: JsonOpt = False) -> None:
    """Close a rectification order."""
    with base.client() as c:
        o = c.close_order(order_id, note)
    base.emit(o, as_json, _orders_table([o]))


def _principal(name: str, disabled: bool, as_json: bool) -> None:
    with base.client() as c:
        p = c.authority_set_principal(name, disabled)
    base.emit(p, as_json, base.fields_table(p))


@authority_app.command("disable", help=_("Disable any principal: its next call is refused and its console sessions "
                                         "end."))
def disable(name: Annotated[str, typer.Argument(help=_("principal name"))], as_json: JsonOpt = False) -> None:
    """Disable any principal: its next call is refused and its console sessions end."""
    _principal(name, True, as_json)


@authority_app.command("enable", help=_("Enable a disabled principal again."))
def enable(name: Annotated[str, typer.Argument(help=_("principal name"))], as_json: JsonOpt = False) -> None:
    """Enable a disabled principal again."""
    _principal(name, False, as_json)


def register(app: typer.Typer) -> None:
    """Add ``veilbox authority`` to the main app."""
    app.add_typer(authority_app, name="authority")
