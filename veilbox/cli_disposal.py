"""`veilbox agreement disposal ID`: an ended agreement's disposal and its signed record (docs/agreements.md,
"Disposal").

Shows how the agreement ended, the steps done (jobs cancelled and refunded, outputs sealed or deleted, model
certificates revoked) and checks the record's signature against the service's public key (fetched from
``GET /v1/audit/public-key``, or pinned with ``--public-key FILE``). For the agreement's owner, the data authority
and regulators. Registered by `veilbox.cli`; shares its connection, output and error conventions
(`veilbox._cli_common`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

KeyOpt = Annotated[Path | None, typer.Option("--public-key", help=_("the service's public key (PEM) to check the "
                                                                    "signature with, instead of fetching it"))]


def signature_valid(disposal: dict[str, Any], public_key_pem: str) -> bool:
    """Whether the disposal's record carries the service's valid signature."""
    from cryptosuite import load_verify_key
    from policies.disposal import record_message

    record, signature = disposal.get("record"), disposal.get("signature")
    if not isinstance(record, dict) or not isinstance(signature, str):
        return False
    try:
        return bool(load_verify_key(public_key_pem).verify(record_message(record), bytes.fromhex(signature)))
    except ValueError:
        return False


def agreement_disposal(agreement_id: base.AgreementArg, public_key: KeyOpt = None,
                       as_json: base.JsonOpt = False) -> None:
    """An ended agreement's disposal: the steps done and the signed record."""
    with base.client() as c:
        d = c.agreement_disposal(agreement_id)
        pem = public_key.read_text() if public_key is not None else (
            c.audit_public_key()["pem"] if d.get("record") else "")
    valid = signature_valid(d, pem) if d.get("record") else None
    if base.wants_json(as_json):
        base.emit({**d, "signature_valid": valid}, True)
        return
    t = Table(_("step"), _("what"), title=_("Disposal of %(id)s: %(state)s", id=agreement_id, state=d["state"]))
    for step in (d.get("record") or {}).get("steps", []):
        what = {k: v for k, v in step.items() if k not in ("step", "at")}
        t.add_row(step["step"], json.dumps(what, ensure_ascii=False, sort_keys=True))
    base.out.print(t)
    if d.get("case"):
        base.out.print(_("Ended: %(case)s", case=d["case"]))
    if valid is not None:
        base.out.print(_("Signature: valid") if valid else _("Signature: INVALID"))
        if not valid:
            raise typer.Exit(1)


def register(agreement_app: typer.Typer) -> None:
    """Add ``disposal`` to ``veilbox agreement``."""
    agreement_app.command("disposal", help=_("An ended agreement's disposal and its signed record (owner, "
                                             "authority, regulators)."))(agreement_disposal)
