"""`veilbox alerts …`: alerts (监测预警): list and acknowledge; the admin's webhooks per subscriber.

Registered on ``veilbox alerts`` by `veilbox.cli`; shares its connection, output and error conventions
(`veilbox._cli_common`). Rules, who reads which alert and the webhook signature: docs/alerts.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

alerts_app = typer.Typer(
    help=_("Alerts (监测预警): budget, refused calls, checks on one subject, engine incidents, the audit chain."),
    no_args_is_help=True,
)
webhook_app = typer.Typer(help=_("The alert webhooks per subscriber (admin)."), no_args_is_help=True)
alerts_app.add_typer(webhook_app, name="webhook")

JsonOpt = base.JsonOpt
SubscriberArg = Annotated[str, typer.Argument(help=_("the principal that receives the alerts it may read"))]


def _table(items: list[dict[str, Any]]) -> Table:
    t = Table(_("id"), _("rule"), _("severity"), _("about"), _("count"), _("raised"), _("acknowledged"))
    for a in items:
        about = a["agreement_id"] or a["principal"] or a["dataset"] or a["subject_hash"] or "—"
        if a["dataset"] and about != a["dataset"]:
            about = f"{about} ({a['dataset']})"
        acked = f"{a['acked_by']} {str(a['acked_at'])[:16]}" if a["acked_at"] else "—"
        t.add_row(a["id"], a["rule"], a["severity"], about, base.cell(a["count"]), str(a["created_at"])[:16], acked)
    return t


@alerts_app.command("list", help=_("The alerts you may read, newest first."))
def list_(
    unacked: Annotated[bool, typer.Option("--unacked", help=_("only those not acknowledged yet"))] = False,
    as_json: JsonOpt = False,
) -> None:
    """The alerts you may read, newest first."""
    with base.client() as c:
        items = c.alerts(unacked)
    base.emit(items, as_json, _table(items))


@alerts_app.command("ack", help=_("Acknowledge an alert (its owner, the authority, an admin)."))
def ack(alert_id: Annotated[str, typer.Argument(help=_("alert id (alr_…)"))], as_json: JsonOpt = False) -> None:
    """Acknowledge an alert (its owner, the authority, an admin)."""
    with base.client() as c:
        out = c.ack_alert(alert_id)
    base.emit(out, as_json, base.fields_table(out, title=_("Alert")))


@webhook_app.command("set", help=_("Set a subscriber's webhook: its alerts are POSTed there, HMAC-signed (admin)."))
def webhook_set(
    subscriber: SubscriberArg,
    url: Annotated[str, typer.Argument(help=_("https:// (http:// only to a loopback host)"))],
    secret: Annotated[
        str,
        typer.Option(
            "--secret",
            prompt=True,
            hide_input=True,
            envvar="VEILBOX_ALERT_WEBHOOK_SECRET",
            help=_("the HMAC key, at least 32 characters (asked for when not given)"),
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Set a subscriber's webhook (admin); the secret is stored wrapped and never shown again."""
    with base.client() as c:
        out = c.set_alert_webhook(subscriber, url, secret)
    base.emit(out, as_json, base.fields_table(out, title=_("Webhook")))


@webhook_app.command("list", help=_("The alert webhooks (admin; secrets are never shown)."))
def webhook_list(as_json: JsonOpt = False) -> None:
    """The alert webhooks (admin)."""
    with base.client() as c:
        items = c.alert_webhooks()
    t = Table(_("subscriber"), _("url"), _("set by"), _("set at"))
    for w in items:
        t.add_row(w["subscriber"], w["url"], w["created_by"], str(w["created_at"])[:16])
    base.emit(items, as_json, t)


@webhook_app.command("remove", help=_("Remove a subscriber's webhook (admin)."))
def webhook_remove(subscriber: SubscriberArg, as_json: JsonOpt = False) -> None:
    """Remove a subscriber's webhook and its secret (admin)."""
    with base.client() as c:
        c.remove_alert_webhook(subscriber)
    if base.wants_json(as_json):
        base.emit({"removed": subscriber}, True)
    else:
        base.out.print(_("Webhook of %(name)s removed.", name=subscriber))


def register(app: typer.Typer) -> None:
    """Add ``veilbox alerts`` to the main app."""
    app.add_typer(alerts_app, name="alerts")
