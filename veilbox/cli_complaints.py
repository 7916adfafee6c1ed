"""`veilbox complaint …`: complaints and objections (投诉与异议): file, list, show, investigate, resolve, reject.

Registered on ``veilbox complaint`` by `veilbox.cli`; shares its connection, output and error conventions
(`veilbox._cli_common`). Rules (routing, who reads and decides, an objection suspending a person's checks):
docs/complaints.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

complaint_app = typer.Typer(
    help=_("Complaints and objections (投诉与异议) on an agreement, job, output or subject."), no_args_is_help=True
)

JsonOpt = base.JsonOpt
IdArg = Annotated[str, typer.Argument(help=_("complaint id (cmp_…)"))]
ReasonsOpt = Annotated[list[str], typer.Option("--reason", help=_("a reason (required; repeat for several)"))]


def _table(items: list[dict[str, Any]]) -> Table:
    t = Table(_("id"), _("kind"), _("target"), _("owner"), _("filer"), _("state"), _("deadline"))
    for c in items:
        t.add_row(
            c["id"],
            c["kind"],
            f"{c['target_kind']}:{c['target']}",
            c["owner"],
            c["filer"],
            c["state"],
            str(c["deadline"])[:10],
        )
    return t


def _one(c: dict[str, Any]) -> Table:
    return base.fields_table({k: v for k, v in c.items() if k != "history"}, title=_("Complaint"))


@complaint_app.command(
    "file", help=_("File a complaint or objection; it is routed to the owner concerned and the data authority.")
)
def file_(
    text: Annotated[str, typer.Argument(help=_("what the complaint or objection is about"))],
    target_kind: Annotated[str, typer.Option("--on", help=_("agreement, job, output or subject"))],
    target: Annotated[str | None, typer.Option("--target", help=_("the agreement's or job's id"))] = None,
    objection: Annotated[
        bool, typer.Option("--objection", help=_("an objection (异议) rather than a complaint"))
    ] = False,
    agreement_id: Annotated[
        str | None, typer.Option("--agreement", help=_("for a subject: the agreement it is named under"))
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            help=_("the person's raw id (owners, on the person's behalf): hashed by the gateway, never stored"),
        ),
    ] = None,
    subject_hash: Annotated[
        str | None, typer.Option("--subject-hash", help=_("the subject's keyed hash (hs:…)"))
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """File a complaint or objection; it is routed to the owner concerned and the data authority."""
    with base.client() as c:
        out = c.file_complaint(
            target_kind,
            text,
            kind="objection" if objection else "complaint",
            target=target,
            agreement_id=agreement_id,
            subject=subject,
            subject_hash=subject_hash,
        )
    base.emit(out, as_json, _one(out))


@complaint_app.command("list", help=_("The complaints you may read, newest first."))
def list_(
    state: Annotated[str | None, typer.Option("--state", help=_("open, investigating, resolved or rejected"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """The complaints you may read, newest first."""
    with base.client() as c:
        items = c.complaints(state)
    base.emit(items, as_json, _table(items))


@complaint_app.command("show", help=_("One complaint and its history of moves with their reasons."))
def show(complaint_id: IdArg, as_json: JsonOpt = False) -> None:
    """One complaint and its history of moves with their reasons."""
    with base.client() as c:
        out = c.complaint(complaint_id)
    t = Table(_("at"), _("state"), _("by"), _("reasons"))
    for h in out["history"]:
        t.add_row(str(h["at"])[:19], h["state"], h["by"], "; ".join(h["reasons"]))
    if base.wants_json(as_json):
        base.emit(out, True)
    else:
        base.out.print(_one(out))
        base.out.print(t)


@complaint_app.command(
    "investigate", help=_("Start investigating an open complaint (its owner, the authority, an admin).")
)
def investigate(complaint_id: IdArg, as_json: JsonOpt = False) -> None:
    """Start investigating an open complaint (its owner, the authority, an admin)."""
    with base.client() as c:
        out = c.move_complaint(complaint_id, "investigate")
    base.emit(out, as_json, _one(out))


@complaint_app.command(
    "resolve", help=_("Resolve a complaint, with the reasons; a resolved objection restores the person's checks.")
)
def resolve(complaint_id: IdArg, reason: ReasonsOpt, as_json: JsonOpt = False) -> None:
    """Resolve a complaint, with the reasons; a resolved objection restores the person's checks."""
    with base.client() as c:
        out = c.move_complaint(complaint_id, "resolve", reason)
    base.emit(out, as_json, _one(out))


@complaint_app.command(
    "reject", help=_("Reject a complaint, with the reasons; a rejected objection restores the person's checks.")
)
def reject(complaint_id: IdArg, reason: ReasonsOpt, as_json: JsonOpt = False) -> None:
    """Reject a complaint, with the reasons; a rejected objection restores the person's checks."""
    with base.client() as c:
        out = c.move_complaint(complaint_id, "reject", reason)
    base.emit(out, as_json, _one(out))


def register(app: typer.Typer) -> None:
    """Add ``veilbox complaint`` to the main app."""
    app.add_typer(complaint_app, name="complaint")
