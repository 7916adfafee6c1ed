"""``veilbox psi size|members`` and ``veilbox verify check-anonymous`` (the bank's side; ids never leave in clear)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import bank_psi
from veilbox._cli_common import AgreementOpt, JsonOpt, client, emit
from vocab.i18n import _

psi_app = typer.Typer(help=_("Private set intersection (the bank's list never leaves in clear)."), no_args_is_help=True)

DatasetOpt = Annotated[str, typer.Option(help=_("dataset name"))]
IdsOpt = Annotated[Path, typer.Option("--ids", help=_("file with one id per line (the bank's list)"))]


def _ids(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def _table(data: dict[str, Any]) -> Table:
    t = Table("field", "value")
    for k, v in data.items():
        t.add_row(k, str(v) if not isinstance(v, list) else ", ".join(map(str, v)))
    return t


@psi_app.command("size", help=_("How many of your ids the dataset holds, with DP noise (ε charged on the agreement)."))
def psi_size(
    agreement: AgreementOpt,
    dataset: DatasetOpt,
    ids: IdsOpt,
    epsilon: Annotated[str, typer.Option(help=_("ε to spend on the noisy size"))],
    purpose: Annotated[str | None, typer.Option(help=_("one of the agreement's purposes"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """How many of your ids the dataset holds, with DP noise (ε charged on the agreement)."""
    with client() as c:
        r = bank_psi.psi_size(c, agreement, dataset, _ids(ids), epsilon=epsilon, purpose=purpose)
    data = {
        "size": r.size,
        "epsilon": r.epsilon,
        "accuracy_95": r.accuracy_95,
        "bank_ids": len(_ids(ids)),
        "receipt": r.receipt,
    }
    emit(data, as_json, _table(data))


@psi_app.command("members", help=_("Which of your ids the dataset holds (where the agreement grants psi_members)."))
def psi_members(
    agreement: AgreementOpt,
    dataset: DatasetOpt,
    ids: IdsOpt,
    consent: Annotated[str | None, typer.Option(help=_("consent reference used for every id"))] = None,
    consents: Annotated[Path | None, typer.Option(help=_("file: one consent reference per id, in order"))] = None,
    purpose: Annotated[str | None, typer.Option(help=_("one of the agreement's purposes"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Which of your ids the dataset holds (where the agreement grants psi_members)."""
    refs: list[str] | str | None = consent
    if consents is not None:
        refs = [line.strip() for line in consents.read_text().splitlines() if line.strip()]
    with client() as c:
        found = bank_psi.psi_members(c, agreement, dataset, _ids(ids), consent_refs=refs, purpose=purpose)
    data = {"present": found, "count": len(found)}
    emit(data, as_json, _table(data))


def check_anonymous(
    name: Annotated[str, typer.Argument(help=_("product name"))],
    agreement: AgreementOpt,
    subject: Annotated[str, typer.Option(help=_("the subject's identifier (never sent)"))],
    consent: Annotated[str, typer.Option(help=_("reference to the subject's consent"))],
    param: Annotated[list[str] | None, typer.Option(help=_("NAME=VALUE (JSON value), repeatable"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a product's question without naming the subject: the service sees only a bucket of ≥ k subjects."""
    params: dict[str, Any] = {}
    for p in param or []:
        key, sep, value = p.partition("=")
        if not sep:
            raise typer.BadParameter(_("NAME=VALUE expected"))
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    with client() as c:
        r = bank_psi.check_anonymous(c, name, agreement, subject, params, consent_ref=consent)
    data = {"result": r.result, "present": r.present, "bucket_size": r.bucket_size, "receipt": r.receipt}
    emit(data, as_json, _table(data))


def register(app: typer.Typer, verify_app: typer.Typer) -> None:
    app.add_typer(psi_app, name="psi")
    verify_app.command(
        "check-anonymous",
        help=_("Ask a product's question without naming the subject: the service sees only a bucket of ≥ k subjects."),
    )(check_anonymous)
