"""`veilbox certificate …`: verify a certificate of a verification product or a released output, list an
agreement's certificates.

Registered on ``veilbox certificate`` by `veilbox.cli`; shares its connection, output and error conventions
(`veilbox._cli_common`). What a certificate covers and when it is valid: docs/certificates.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

certificate_app = typer.Typer(
    help=_("Certificates of verification products and released outputs, with their data sources."),
    no_args_is_help=True,
)

JsonOpt = base.JsonOpt
IdArg = Annotated[str, typer.Argument(help=_("certificate id (VBX-PC-… or VBX-OC-…)"))]


def _sources(c: dict[str, Any]) -> str:
    return ", ".join(f"{s['dataset']} ({s['owner']})" for s in c.get("source", []))


@certificate_app.command(
    "show", help=_("Verify one certificate: valid, revoked or expired, what it covers, its data sources.")
)
def certificate_show(certificate_id: IdArg, as_json: JsonOpt = False) -> None:
    """Verify one certificate: valid, revoked or expired, what it covers, its data sources."""
    with base.client() as c:
        cert = c.certificate(certificate_id)
    base.emit(cert, as_json, base.fields_table(cert, title=certificate_id))


@certificate_app.command(
    "list", help=_("An agreement's certificates: its released outputs and the products over its datasets.")
)
def certificate_list(agreement: base.AgreementOpt, as_json: JsonOpt = False) -> None:
    """An agreement's certificates: its released outputs and the products over its datasets."""
    with base.client() as c:
        items = c.certificates(agreement)
    t = Table(_("id"), _("kind"), _("subject"), _("status"), _("valid until"), _("sources"))
    for cert in items:
        t.add_row(cert["id"], cert["kind"], cert["subject"], cert["status"], cert["valid_until"][:10], _sources(cert))
    base.emit(items, as_json, t)


def register(app: typer.Typer) -> None:
    """Add ``veilbox certificate`` to the main app."""
    app.add_typer(certificate_app, name="certificate")
