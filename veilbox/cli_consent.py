"""`veilbox consent …`: the consent registry (同意登记): record, import, list, revoke, trustee, subject-access.

Registered on ``veilbox consent`` by `veilbox.cli`; shares its connection, output and error conventions
(`veilbox._cli_common`). A person's raw id given here is sent to the gateway, which hashes it with the products'
subject key before storing anything; ``import`` reads a CSV or Parquet file of raw ids (or of keyed hashes, with
``--hashes``) and sends them in batches of at most 1000, with a progress bar; it never writes the ids anywhere.
Rules (who records, what a consent covers, how checks are refused): docs/consent.md.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

consent_app = typer.Typer(
    help=_("The consent registry (同意登记): scenario-based consents per person."), no_args_is_help=True
)

#: Subjects per request of a bulk import (the gateway's limit per call).
BATCH = 1000

JsonOpt = base.JsonOpt
IdArg = Annotated[str, typer.Argument(help=_("consent id (cns_…)"))]
GranteeOpt = Annotated[str, typer.Option("--grantee", help=_("who may use the consent on its calls"))]
ScenarioOpt = Annotated[str, typer.Option("--scenario", help=_("the scenario (场景) the person agreed to, in words"))]
ProductsOpt = Annotated[
    list[str],
    typer.Option(
        "--product", help=_("a product covered: a verification product or psi_members:<dataset> (repeat for several)")
    ),
]
UntilOpt = Annotated[str, typer.Option("--until", help=_("end of validity: an ISO date or time, or +N days"))]
FromOpt = Annotated[str | None, typer.Option("--from", help=_("start of validity (default: now)"))]
OwnerOpt = Annotated[
    str | None, typer.Option("--owner", help=_("the data owner you record for, as its trustee (default: yourself)"))
]


def when(text: str) -> str:
    """``+N`` (days from now), an ISO date or an ISO time, as an ISO time in UTC."""
    if text.startswith("+") and text[1:].isdigit():
        return (dt.datetime.now(dt.UTC) + dt.timedelta(days=int(text[1:]))).isoformat()
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).isoformat()


def read_subjects(path: Path, column: str | None = None) -> list[str]:
    """The values of ``column`` (default: the first) of a CSV or Parquet file, as text, blanks skipped."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        name = column or table.column_names[0]
        if name not in table.column_names:
            raise base.CliError(_("no column %(c)s in %(p)s", c=name, p=str(path)), _("name it with --column"))
        values = [str(v) for v in table.column(name).to_pylist() if v is not None]
    else:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return []
        name = column or next(iter(rows[0]))
        if name not in rows[0]:
            raise base.CliError(_("no column %(c)s in %(p)s", c=name, p=str(path)), _("name it with --column"))
        values = [r[name] for r in rows if r.get(name)]
    return [v.strip() for v in values if v.strip()]


def batches(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _table(items: list[dict[str, Any]]) -> Table:
    t = Table(_("id"), _("subject"), _("grantee"), _("products"), _("until"), _("state"))
    for c in items:
        t.add_row(
            c["id"], c["subject_hash"], c["grantee"], ", ".join(c["products"]), str(c["valid_until"])[:10], c["state"]
        )
    return t


def _one(c: dict[str, Any]) -> Table:
    return base.fields_table(c, title=_("Consent"))


@consent_app.command("record", help=_("Record one person's consent (the raw id is hashed by the gateway)."))
def record(
    subject: Annotated[str, typer.Argument(help=_("the person's id as the products use it (or hs:… with --hash)"))],
    grantee: GranteeOpt,
    scenario: ScenarioOpt,
    product: ProductsOpt,
    until: UntilOpt,
    valid_from: FromOpt = None,
    owner: OwnerOpt = None,
    is_hash: Annotated[bool, typer.Option("--hash", help=_("the subject is its keyed hash (hs:…)"))] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record one person's consent (the raw id is hashed by the gateway)."""
    with base.client() as c:
        (out,) = c.record_consents(
            grantee,
            scenario,
            product,
            when(until),
            subjects=None if is_hash else [subject],
            subject_hashes=[subject] if is_hash else None,
            owner=owner,
            valid_from=when(valid_from) if valid_from else None,
        )
    base.emit(out, as_json, _one(out))


@consent_app.command("import", help=_("Record consents in bulk from a CSV or Parquet file of ids (or hashes)."))
def import_(
    path: Annotated[
        Path, typer.Argument(help=_("a .csv (with a header) or .parquet file"), exists=True, dir_okay=False)
    ],
    grantee: GranteeOpt,
    scenario: ScenarioOpt,
    product: ProductsOpt,
    until: UntilOpt,
    column: Annotated[str | None, typer.Option("--column", help=_("the column of ids (default: the first)"))] = None,
    hashes: Annotated[bool, typer.Option("--hashes", help=_("the column holds keyed hashes (hs:…)"))] = False,
    valid_from: FromOpt = None,
    owner: OwnerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record consents in bulk from a CSV or Parquet file of ids (or hashes)."""
    subjects = read_subjects(path, column)
    if not subjects:
        raise base.CliError(_("no subjects in %(p)s", p=str(path)), _("check the file and --column"))
    start, end = (when(valid_from) if valid_from else None), when(until)
    recorded: list[dict[str, Any]] = []
    with (
        base.client() as c,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=base.err,
            disable=base.wants_json(as_json),
        ) as bar,
    ):
        task = bar.add_task(_("recording consents"), total=len(subjects))
        for part in batches(subjects):
            recorded += c.record_consents(
                grantee,
                scenario,
                product,
                end,
                owner=owner,
                valid_from=start,
                subjects=None if hashes else list(part),
                subject_hashes=list(part) if hashes else None,
            )
            bar.advance(task, len(part))
    summary = {"recorded": len(recorded), "ids": [r["id"] for r in recorded]}
    if base.wants_json(as_json):
        base.emit(summary, True)
    else:
        base.out.print(_("Recorded %(n)s consents (first %(first)s).", n=len(recorded), first=recorded[0]["id"]))


@consent_app.command("list", help=_("The consents you recorded, own or were granted, newest first."))
def list_(
    subject_hash: Annotated[str | None, typer.Option("--subject-hash", help=_("one subject's keyed hash"))] = None,
    grantee: Annotated[str | None, typer.Option("--grantee", help=_("one grantee"))] = None,
    product: Annotated[str | None, typer.Option("--product", help=_("one product"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """The consents you recorded, own or were granted, newest first."""
    with base.client() as c:
        items = c.consents(subject_hash=subject_hash, grantee=grantee, product=product)
    base.emit(items, as_json, _table(items))


@consent_app.command("revoke", help=_("Revoke a consent with a reason; the next call naming it is refused."))
def revoke(
    consent_id: IdArg,
    reason: Annotated[str, typer.Option("--reason", help=_("why (kept with the consent and in the audit log)"))],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a consent with a reason; the next call naming it is refused."""
    with base.client() as c:
        out = c.revoke_consent(consent_id, reason)
    base.emit(out, as_json, _one(out))


@consent_app.command("trustee", help=_("Name (or --remove) a principal allowed to record your consents."))
def trustee(
    name: Annotated[str, typer.Argument(help=_("the trustee principal"))],
    remove: Annotated[bool, typer.Option("--remove", help=_("withdraw the authorisation"))] = False,
    as_json: JsonOpt = False,
) -> None:
    """Name (or --remove) a principal allowed to record your consents."""
    with base.client() as c:
        out = c.consent_trustee(name, remove=remove)
    base.emit(out, as_json, None if base.wants_json(as_json) else _trustees(out))


def _trustees(names: list[str]) -> Table:
    t = Table(_("trustee"))
    for n in names:
        t.add_row(n)
    return t


@consent_app.command("subject-access", help=_("A person's consents and every recorded use of their data (owners)."))
def subject_access(
    subject: Annotated[str | None, typer.Argument(help=_("the person's id (hashed by the gateway)"))] = None,
    subject_hash: Annotated[str | None, typer.Option("--subject-hash", help=_("or its keyed hash"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """A person's consents and every recorded use of their data (owners)."""
    with base.client() as c:
        out = c.subject_access(subject, subject_hash=subject_hash)
    if base.wants_json(as_json):
        base.emit(out, True)
        return
    base.out.print(_("Subject %(h)s", h=out["subject_hash"]))
    base.out.print(_table(out["consents"]))
    t = Table(_("when"), _("who"), _("action"), _("product"), _("agreement"), _("outcome"))
    for u in out["uses"]:
        t.add_row(
            str(u["ts"])[:19],
            u["actor"],
            u["action"],
            u["product"] or "",
            u["agreement_id"] or "",
            u["code"] or u["decision"],
        )
    base.out.print(t)


def register(app: typer.Typer) -> None:
    """Add ``veilbox consent`` to the main app."""
    app.add_typer(consent_app, name="consent")
