"""Alerts over HTTP (监测预警, docs/alerts.md): a burst of refused calls raises one alert, read by the admin and the
regulator and not by the owner or the grantee, acknowledged by the admin (a regulator only reads), from the API,
the console and the CLI; the admin's webhooks never show their secret. The worker's duty runs in-process on the served
context (no waiting)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gateway.services import alerts
from tests.system.http.console.conftest import csrf_in, sign_in, token_of
from veilbox.cli import app
from veilbox.client import ApiError


def _cli(url: str, client, *args: str) -> str:
    token = client._http.headers["Authorization"].split()[1]
    r = CliRunner().invoke(app, ["--url", url, "--token", token, *args], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.output


def test_alerts_list_ack_and_webhooks_over_http(service) -> None:
    svc = service
    svc.ctx.settings.alert_denied_count, svc.ctx.settings.alert_denied_window_s = 3, 7 * 86_400.0
    owner, reg = svc.principal("tax", "owner"), svc.principal("reg", "regulator")
    bank = svc.principal("bank", "bank")
    for i in range(3):  # a grantee trying an admin's call: refused each time
        with pytest.raises(ApiError):
            bank.create_principal(f"x{i}", "bank")
    (alert_id,) = alerts.evaluate(svc.ctx)
    assert alerts.evaluate(svc.ctx) == []  # once per condition

    (seen,) = svc.admin.alerts()
    assert seen["id"] == alert_id and seen["rule"] == "denied" and seen["principal"] == "bank"
    assert [a["id"] for a in reg.alerts()] == [alert_id]
    assert owner.alerts() == [] and bank.alerts() == []
    with pytest.raises(ApiError) as ei:
        reg.ack_alert(alert_id)
    assert ei.value.code == "POLICY_DENIED"
    assert [a["id"] for a in json.loads(_cli(svc.url, reg, "alerts", "list", "--unacked", "--json"))] == [alert_id]
    # the console: the regulator reads it without a form, the owner reads none, the admin acknowledges it
    webs = [sign_in(svc.url, token_of(c)) for c in (reg, owner, svc.admin)]
    try:
        seen = webs[0].get("/console/alerts").text
        assert alert_id in seen and f"/console/alerts/{alert_id}/ack" not in seen
        assert alert_id not in webs[1].get("/console/alerts").text
        page = webs[2].get("/console/alerts?unacked=1").text
        assert f'action="/console/alerts/{alert_id}/ack"' in page
        r = webs[2].post(f"/console/alerts/{alert_id}/ack", data={"csrf": csrf_in(page)})
        assert r.status_code == 303 and alert_id not in webs[2].get("/console/alerts?unacked=1").text
    finally:
        for web in webs:
            web.close()
    assert json.loads(_cli(svc.url, svc.admin, "alerts", "ack", alert_id, "--json"))["acked_by"] == "admin"
    assert svc.admin.alerts(unacked=True) == []

    secret = "s" * 40
    out = svc.admin.set_alert_webhook("reg", "http://127.0.0.1:9/hook?token=t", secret)
    assert out["url"] == "http://127.0.0.1:9/hook"  # never the query
    assert svc.admin.alert_webhooks() == [out]
    with pytest.raises(ApiError) as ei:
        svc.admin.set_alert_webhook("reg", "http://example.org/hook", secret)
    assert ei.value.code == "INVALID_REQUEST"
    with pytest.raises(ApiError):
        reg.alert_webhooks()
    svc.admin.remove_alert_webhook("reg")
    assert svc.admin.alert_webhooks() == []
    rows, _ = svc.ctx.audit.entries(limit=10_000)
    assert not any(secret in e["details"] for e in rows)
    actions = {e["action"] for e in rows}
    assert {"alert.raise", "console.alert.ack", "alert.webhook.set", "alert.webhook.remove"} <= actions
