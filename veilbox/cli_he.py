"""``veilbox model score`` and ``veilbox verify check-encrypted``: the bank's encrypted calls from the shell.

Both wrap the bank SDK (`veilbox.bank`): keys are made here, only ciphertexts and the public context leave, and
answers are decrypted here. Registered on the main app by `veilbox.cli` (conventions: `veilbox._cli_common`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _


def _applicants(path: Path) -> list[dict[str, Any]]:
    """A JSON list of feature objects, or JSON lines (one object per line)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise base.CliError(_("%(path)s does not exist", path=str(path)), _("check the path")) from None
    try:
        data = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except ValueError as e:
        raise base.CliError(
            _("%(path)s is not valid JSON: %(cause)s", path=str(path), cause=str(e)),
            _("give a JSON list of objects or one JSON object per line"),
        ) from None
    if not data or not all(isinstance(a, dict) for a in data):
        raise base.CliError(
            _("%(path)s holds no applicants", path=str(path)),
            _("give a JSON list of objects (feature name → value) or one object per line"),
        )
    return data


def model_score(
    model_id: Annotated[str, typer.Argument(help=_("model id (from `veilbox model list`)"))],
    applicants: Annotated[
        Path,
        typer.Option(help=_("JSON list of applicants (feature name → value, as in the model card), or JSON lines")),
    ],
    agreement: Annotated[
        str | None,
        typer.Option(
            help=_("agreement id (agr_…; a unique prefix is enough) the scores are metered on"),
            callback=lambda v: base.resolve_agreement(v) if v else v,
        ),
    ] = None,
    cutoff: Annotated[
        float,
        typer.Option(help=_("decision cut-off in logit units (σ(cut-off) is the probability threshold; 0 means 0.5)")),
    ] = 0.0,
    logits: Annotated[
        bool,
        typer.Option(
            "--logits", help=_("ask for the logits themselves (only where the agreement grants score_logits)")
        ),
    ] = False,
    layout: Annotated[str, typer.Option(help=_("columns (many applicants per request) | row"))] = "columns",
    as_json: base.JsonOpt = False,
) -> None:
    """Score applicants under encryption (bank): a decision per applicant against your encrypted cut-off, or logits.

    The service sees only ciphertexts; the features and the cut-off never leave in clear."""
    from veilbox import bank

    if layout not in ("columns", "row"):
        raise typer.BadParameter(_("must be columns or row"), param_hint="--layout")
    people = _applicants(applicants)
    with base.client() as c:
        try:
            if logits:
                sr = bank.score_applicants(c, model_id, people, layout=layout, agreement_id=agreement)  # type: ignore[arg-type]
                rows = [
                    {"applicant": i, "logit": float(v), "probability": float(p)}
                    for i, (v, p) in enumerate(zip(sr.logits, sr.probabilities, strict=True))
                ]
                meter = {"counted": sr.scores_counted, "used": sr.scores_used, "limit": sr.scores_limit}
            else:
                dr = bank.decide_applicants(
                    c,
                    model_id,
                    people,
                    cutoff,
                    layout=layout,  # type: ignore[arg-type]
                    agreement_id=agreement,
                )
                rows = [{"applicant": i, "decision": bool(d)} for i, d in enumerate(dr.decisions)]
                meter = {"counted": dr.decisions_counted, "used": dr.decisions_used, "limit": dr.decisions_limit}
        except ValueError as e:
            raise base.CliError(
                str(e), _("check the applicants against the model card (`veilbox model show`)")
            ) from None
    data = {"model_id": model_id, "results": rows, "meter": meter}
    t = Table(*rows[0].keys(), caption=_("used %(used)s of %(limit)s on this agreement", **meter))
    for r in rows:
        t.add_row(*[base.cell(v) for v in r.values()])
    base.emit(data, as_json, t)


def check_encrypted(
    name: Annotated[str, typer.Argument(help=_("product name (one with an encrypted form)"))],
    agreement: base.AgreementOpt,
    subject: Annotated[list[str], typer.Option(help=_("subject identifier, repeatable (one per --threshold)"))],
    threshold: Annotated[
        list[int],
        typer.Option(
            help=_("integer threshold for the subject at the same position, repeatable (never sent in clear)")
        ),
    ],
    consent: Annotated[str, typer.Option(help=_("reference to the subjects' consent"))],
    consent_id: Annotated[list[str] | None, typer.Option(
        "--consent-id", help=_("a registered consent id (同意登记) for the subject at the same position, repeatable "
                               "(where the service enforces the consent registry)"))] = None,
    as_json: base.JsonOpt = False,
) -> None:
    """Threshold checks under your BFV key (bank): the service never sees a threshold; prints answers and receipt."""
    from veilbox import bank

    if len(subject) != len(threshold):
        raise typer.BadParameter(_("give one --threshold per --subject"), param_hint="--threshold")
    with base.client() as c:
        try:
            answers, receipt = bank.check_thresholds(c, name, agreement, subject, threshold, consent_ref=consent,
                                                     consent_ids=consent_id)
        except ValueError as e:
            raise base.CliError(str(e), _("check the product's threshold bounds (`veilbox verify list`)")) from None
    data = {"results": [{"subject": s, "result": a} for s, a in zip(subject, answers, strict=True)], "receipt": receipt}
    t = Table(_("subject"), _("result"), caption=_("receipt %(r)s", r=receipt))
    for s, a in zip(subject, answers, strict=True):
        t.add_row(s, str(a))
    base.emit(data, as_json, t)


def register(model_app: typer.Typer, verify_app: typer.Typer) -> None:
    model_app.command(
        "score",
        help=_(
            "Score applicants under encryption (bank): a decision per applicant against your encrypted cut-off, or "
            "logits.\n\nThe service sees only ciphertexts; the features and the cut-off never leave in clear."
        ),
    )(model_score)
    verify_app.command(
        "check-encrypted",
        help=_(
            "Threshold checks under your BFV key (bank): the service never sees a threshold; prints answers and "
            "receipt."
        ),
    )(check_encrypted)
