"""Alerts (监测预警, `gateway.services.alerts`): each rule fires once per condition and not below its threshold, racing
evaluations raise one alert, a per-subject alert names the subject's hash only to the owner, and webhooks are signed
(HMAC over timestamp and body), retried with backoff on a fake clock and marked failed after the last attempt."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from sqlalchemy import update

from catalog import _tables as ct
from gateway import _tables as t
from gateway.audit import AuditEvent
from gateway.context import AppContext, init_home, open_context
from gateway.identities import by_name, create_principal
from gateway.services import alerts
from gateway.settings import Settings
from policies import _tables as pt
from policies.actor import Actor
from vocab.roles import SYSTEM

SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"])
WEEK = 7 * 86_400.0  # windows this wide: a test's entries never straddle two of them in practice


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    init_home(settings)
    c = open_context(settings)
    s = c.settings
    s.alert_denied_count, s.alert_denied_window_s = 3, WEEK
    s.alert_checks_count, s.alert_checks_window_s = 3, WEEK
    s.alert_incidents_count, s.alert_incidents_window_s = 2, WEEK
    # a generous attempt timeout: a delivery that should succeed must not time out on a loaded machine
    s.alert_webhook_attempts, s.alert_webhook_backoff_s, s.alert_webhook_timeout_s = 3, 10.0, 60.0
    pepper = c.keys.token_pepper
    for name, role in (("tax", "owner"), ("other-owner", "owner"), ("reg", "regulator"), ("bank", "bank")):
        create_principal(c.engine, name, role, created_by="admin", pepper=pepper)
    now = dt.datetime.now(dt.UTC)
    with c.engine.begin() as conn:
        conn.execute(
            ct.datasets.insert().values(
                name="tax_income",
                owner="tax",
                description="",
                grade="general",
                personal=True,
                sensitive=False,
                columns_json="{}",
                max_rows_per_unit=1,
                fingerprint="sha256:f",
                rows=1,
                bytes=1,
                path="x",
                ingest_report_json="{}",
                created_at=now,
            )
        )
    yield c
    c.close()


def _entry(ctx: AppContext, **kw: object) -> None:
    ctx.audit.append(AuditEvent(**kw))  # type: ignore[arg-type]


def _alerts(ctx: AppContext, who: str, role: str) -> list[dict]:
    return alerts.list_alerts(ctx, Actor(who, role))


def _raised(ctx: AppContext) -> list[dict]:
    rows, _ = ctx.audit.entries(limit=10_000)
    return [json.loads(e["details"]) for e in rows if e["action"] == "alert.raise"]


def _agreement(ctx: AppContext, spent: str) -> None:
    now = dt.datetime.now(dt.UTC)
    with ctx.engine.begin() as conn:
        if conn.execute(pt.agreements.select()).first() is None:
            conn.execute(
                pt.agreements.insert().values(
                    id="ag_1",
                    owner="tax",
                    grantee="bank",
                    title="t",
                    state="active",
                    version=1,
                    document_hash="x",
                    document_json="{}",
                    valid_from=now,
                    valid_until=now,
                    created_at=now,
                    updated_at=now,
                    expired_recorded=False,
                )
            )
            conn.execute(
                pt.budget_accounts.insert().values(
                    agreement_id="ag_1",
                    dataset="tax_income",
                    epsilon_total="10/1",
                    delta_total="0/1",
                    epsilon_spent=spent,
                    delta_spent="0/1",
                    updated_at=now,
                )
            )
        else:
            conn.execute(update(pt.budget_accounts).values(epsilon_spent=spent))


@SQLITE_ONLY
def test_each_rule_fires_once_per_condition_and_not_below_its_threshold(ctx: AppContext) -> None:
    # below every threshold: nothing
    _agreement(ctx, "79/10")  # 79 % of ε spent
    for _ in range(2):
        _entry(ctx, actor="bank", role="bank", action="query.run", decision="deny", code="POLICY_DENIED")
        _entry(ctx, actor="bank", role="bank", action="verify.check", dataset="tax_income", subject_hash="hs:aa")
    _entry(ctx, actor="system", role=SYSTEM, action="job.incident", dataset="tax_income", decision="error")
    assert alerts.evaluate(ctx, chain=True) == []

    # each crosses its threshold: one alert each
    _agreement(ctx, "8/1")  # 80 %
    _entry(ctx, actor="bank", role="bank", action="query.run", decision="deny", code="POLICY_DENIED")
    _entry(ctx, actor="other-bank", role="bank", action="verify.check", dataset="tax_income", subject_hash="hs:aa")
    _entry(ctx, actor="system", role=SYSTEM, action="job.incident", dataset="tax_income", decision="error")
    assert len(alerts.evaluate(ctx)) == 4
    by_rule = {a["rule"]: a for a in _alerts(ctx, "admin", "admin")}
    assert set(by_rule) == {"budget", "denied", "checks", "incidents"}
    assert by_rule["budget"]["agreement_id"] == "ag_1" and by_rule["budget"]["details"]["spent_share"] == 0.8
    assert by_rule["denied"]["principal"] == "bank" and by_rule["denied"]["count"] == 3
    assert by_rule["checks"]["count"] == 3 and by_rule["checks"]["details"]["grantees"] == 2
    assert by_rule["incidents"]["dataset"] == "tax_income" and by_rule["incidents"]["severity"] == "critical"

    # the conditions still hold, and more of the same arrives: nothing fires twice
    _entry(ctx, actor="bank", role="bank", action="query.run", decision="deny", code="POLICY_DENIED")
    _agreement(ctx, "9/1")
    assert alerts.evaluate(ctx) == []
    assert sorted(d["rule"] for d in _raised(ctx)) == ["budget", "checks", "denied", "incidents"]  # each audited

    # the audit chain's verification fails: one chain alert, once
    with ctx.engine.begin() as conn:
        conn.execute(update(t.audit_entries).where(t.audit_entries.c.seq == 2).values(details='{"edited":1}'))
    raised = alerts.evaluate(ctx, chain=True)
    assert [a["rule"] for a in _alerts(ctx, "admin", "admin") if a["id"] in raised] == ["chain"]
    assert alerts.evaluate(ctx, chain=True) == []


@SQLITE_ONLY
def test_who_reads_which_alert_and_the_subject_hash_only_for_its_owner(ctx: AppContext) -> None:
    for actor in ("bank", "bank", "other-bank"):
        _entry(ctx, actor=actor, role="bank", action="verify.check", dataset="tax_income", subject_hash="hs:aa")
    for _ in range(3):
        _entry(ctx, actor="bank", role="bank", action="query.run", decision="deny", code="POLICY_DENIED")
    assert len(alerts.evaluate(ctx)) == 2
    owner = {a["rule"]: a for a in _alerts(ctx, "tax", "owner")}
    assert set(owner) == {"checks"} and owner["checks"]["subject_hash"] == "hs:aa"  # the owner concerned only
    assert _alerts(ctx, "other-owner", "owner") == []
    assert _alerts(ctx, "bank", "bank") == []  # grantees read none
    for who, role in (("reg", "regulator"), ("admin", "admin")):
        seen = {a["rule"]: a for a in _alerts(ctx, who, role)}
        assert set(seen) == {"checks", "denied"} and seen["checks"]["subject_hash"] is None
    # acknowledging: the owner its own, a regulator reads only; twice keeps the first
    alert_id = owner["checks"]["id"]
    tax, reg = by_name(ctx.engine, "tax"), by_name(ctx.engine, "reg")
    assert tax is not None and reg is not None
    with pytest.raises(Exception, match="does not acknowledge"):
        alerts.acknowledge(ctx, reg, alert_id, AuditEvent(actor="reg", role="regulator", action="alert.ack"))
    first = alerts.acknowledge(ctx, tax, alert_id, AuditEvent(actor="tax", role="owner", action="alert.ack"))
    assert first["acked_by"] == "tax"
    assert alerts.acknowledge(ctx, tax, alert_id, AuditEvent(actor="tax", role="owner", action="alert.ack")) == first
    assert alerts.list_alerts(ctx, Actor("tax", "owner"), unacked=True) == []


def test_racing_evaluations_raise_one_alert(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        _entry(ctx, actor="bank", role="bank", action="query.run", decision="deny", code="POLICY_DENIED")
    now = dt.datetime.now(dt.UTC)
    barrier, out = threading.Barrier(2), []

    def run() -> None:  # two workers evaluating at once
        barrier.wait()
        out.append(alerts.evaluate(ctx, now))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(len(ids) for ids in out) == [0, 1]
    # both pass the existence check before either inserts: the unique condition key keeps one
    (cond,) = alerts.conditions(ctx, now)
    monkeypatch.setattr(alerts, "_exists", lambda conn, key: False)
    assert alerts.raise_alert(ctx, cond, now) is None
    assert len(_alerts(ctx, "admin", "admin")) == 1 and len(_raised(ctx)) == 1


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((self.path, dict(self.headers), body))
        self.send_response(500 if self.path == "/down" else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list]]:
    _Receiver.got = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Receiver.got
    srv.shutdown()
    srv.server_close()


@SQLITE_ONLY
def test_webhooks_are_signed_retried_with_backoff_and_marked_failed(ctx: AppContext, receiver) -> None:
    url, got = receiver
    admin = by_name(ctx.engine, "admin")
    assert admin is not None
    secret_ok, secret_down = "k" * 32, "d" * 32
    for sub, path, secret in (("tax", "/ok", secret_ok), ("reg", "/down", secret_down)):
        alerts.set_webhook(
            ctx,
            admin,
            sub,
            alerts.WebhookBody(url=url + path, secret=secret),
            AuditEvent(actor="admin", role="admin", action="alert.webhook.set"),
        )
    assert [w["subscriber"] for w in alerts.list_webhooks(ctx)] == ["reg", "tax"]
    with pytest.raises(Exception, match="https"):
        alerts.set_webhook(
            ctx,
            admin,
            "tax",
            alerts.WebhookBody(url="http://example.org/x", secret=secret_ok),
            AuditEvent(actor="admin", role="admin", action="alert.webhook.set"),
        )
    for actor in ("bank", "bank", "bank"):
        _entry(ctx, actor=actor, role="bank", action="verify.check", dataset="tax_income", subject_hash="hs:aa")
    t0 = dt.datetime.now(dt.UTC)
    (alert_id,) = alerts.evaluate(ctx, t0)

    assert alerts.deliver_due(ctx, t0) == 2
    (ok,) = [g for g in got if g[0] == "/ok"]
    headers, body = ok[1], ok[2]
    stamp = headers[alerts.TIMESTAMP_HEADER]
    expected = hmac.new(secret_ok.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers[alerts.SIGNATURE_HEADER] == f"hmac-sha256={expected}"
    payload = json.loads(body)
    assert payload["alert"]["id"] == alert_id and payload["alert"]["subject_hash"] == "hs:aa"  # the owner's view
    (down,) = [g for g in got if g[0] == "/down"]
    assert json.loads(down[2])["alert"]["subject_hash"] is None  # the regulator's view

    def state(sub: str) -> dict:
        return next(d for d in alerts.deliveries(ctx, alert_id) if d["subscriber"] == sub)

    assert state("tax")["state"] == "delivered" and state("reg")["state"] == "pending"
    assert alerts.deliver_due(ctx, t0 + dt.timedelta(seconds=9)) == 0  # backoff 10 s: not yet
    assert alerts.deliver_due(ctx, t0 + dt.timedelta(seconds=10)) == 1
    assert state("reg")["attempts"] == 2
    assert alerts.deliver_due(ctx, t0 + dt.timedelta(seconds=29)) == 0  # doubled: 20 s after the second
    assert alerts.deliver_due(ctx, t0 + dt.timedelta(seconds=30)) == 1
    assert state("reg")["state"] == "failed" and state("reg")["attempts"] == 3
    assert alerts.deliver_due(ctx, t0 + dt.timedelta(days=1)) == 0  # failed: never again
    rows, _ = ctx.audit.entries(limit=10_000)
    outcomes = [json.loads(e["details"])["outcome"] for e in rows if e["action"] == "alert.deliver"]
    assert sorted(outcomes) == ["delivered", "failed", "pending", "pending"]  # every attempt audited
    assert not any(secret_ok in e["details"] or secret_down in e["details"] for e in rows)  # secrets never logged
    assert len([g for g in got if g[0] == "/down"]) == 3


@SQLITE_ONLY
def test_the_workers_duty_runs_every_interval_and_verifies_the_chain_less_often(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx.settings.alert_every_s, ctx.settings.alert_chain_every_s = 60.0, 3600.0
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(alerts, "evaluate", lambda c, now=None, *, chain=False: calls.append(("evaluate", chain)))
    monkeypatch.setattr(alerts, "deliver_due", lambda c, now=None: calls.append(("deliver", False)))
    clock = [1000.0]
    duty = alerts.AlertDuty(ctx, clock=lambda: clock[0])
    duty.tick()
    assert calls == []  # the first run is one interval after start
    for step in (60.0, 59.0, 1.0, 3600.0):
        clock[0] += step
        duty.tick()
    assert calls == [
        ("evaluate", True),
        ("deliver", False),  # at +60: rules, the chain, deliveries
        ("evaluate", False),
        ("deliver", False),  # at +120: the chain not yet due again
        ("evaluate", True),
        ("deliver", False),
    ]  # at +3720: the chain again
