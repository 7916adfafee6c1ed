"""Alerts (监测预警): rules the job worker evaluates, alerts raised once per condition, read and acknowledged in the
console, the API and the CLI, and delivered to webhooks signed with an HMAC (docs/alerts.md).

Rules (thresholds: ``VEILBOX_ALERT_*``, `gateway.settings.Settings`):

- ``budget``: an agreement has spent ``alert_budget_ratio`` (default 80 %) or more of its allowance (ε or δ) on a
  dataset; one alert per (agreement, dataset);
- ``denied``: one principal's calls were refused ``alert_denied_count`` times within one window of
  ``alert_denied_window_s`` (read from the audit log, decision ``deny``); one alert per (principal, window);
- ``checks``: one subject (its keyed hash) was checked ``alert_checks_count`` times, by any grantee, within one
  window on one dataset's verification products; one alert per (subject, dataset, window);
- ``incidents``: ``alert_incidents_count`` engine incidents (``job.incident``) on one dataset within one window;
- ``chain``: the audit chain's verification (`gateway.audit.AuditLog.verify`) failed; one alert per (first bad
  seq, reason), every ``alert_chain_every_s``.

Windows are fixed: ``[k·w, (k+1)·w)`` in epoch seconds; each evaluation looks at the current and the previous
window, so a burst counted late is still seen once.

Once per condition: an alert's ``condition_key`` is unique in the store. Raising inserts the row, one delivery
per webhook whose subscriber may read it and the ``alert.raise`` audit entry in one transaction; a second worker
or a restart raising the same condition hits the unique key and raises nothing.

Who reads which alert: the data authority, regulators and admins all; an owner those about its agreements and
datasets; nobody else. A subject's hash is shown only to the owner whose dataset was checked (everyone else reads
``subject_hash: null``). The owner, the authority and admins acknowledge; regulators read.

Webhooks: an admin sets one per subscriber (a principal: it receives the alerts it may read, in its own view),
``https://`` (``http://`` only to a loopback host) with a secret of at least 32 characters, kept as a keyring
secret (wrapped by the master key). The worker POSTs the alert as JSON with ``X-Veilbox-Alert-Timestamp: <epoch
seconds>`` and ``X-Veilbox-Alert-Signature: hmac-<alg>=<hex>``, the HMAC over ``<timestamp>.<body>`` in the home's
suite (HMAC-SHA256 for ``intl``, HMAC-SM3 for ``sm``). A failed attempt is retried after
``alert_webhook_backoff_s``, doubled each time, until ``alert_webhook_attempts``; then the delivery is ``failed``.
Every attempt is an ``alert.deliver`` audit entry committed with the delivery's new state.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from catalog import _tables as ct
from catalog.errors import POLICY_DENIED, DomainError, invalid, not_found
from catalog.keyring import SECRET_PREFIX
from cryptosuite import suite_of
from gateway import _tables as t
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal, by_name
from gateway.journal import request_entry
from policies import _tables as pt
from policies._exact import from_db
from policies.actor import Actor
from vocab.actions import AuditAction
from vocab.roles import SYSTEM, Role

log = logging.getLogger("veilbox.alerts")

__all__ = [
    "RULES",
    "AlertDuty",
    "WebhookBody",
    "acknowledge",
    "deliver_due",
    "evaluate",
    "list_alerts",
    "list_webhooks",
    "remove_webhook",
    "set_webhook",
    "sign",
]

RULES = ("budget", "denied", "checks", "incidents", "chain")
SEVERITY = {"budget": "warning", "denied": "warning", "checks": "warning", "incidents": "critical", "chain": "critical"}
#: the audit actions of a plain verification check (each records the subject's keyed hash)
CHECK_ACTIONS = ("verify.check", AuditAction.CONSOLE_VERIFY_CHECK.value)
TIMESTAMP_HEADER = "X-Veilbox-Alert-Timestamp"
SIGNATURE_HEADER = "X-Veilbox-Alert-Signature"
FORMAT = "veilbox-alert/1"
READ_ALL = (Role.ADMIN, Role.AUTHORITY, Role.REGULATOR)
ACK_ROLES = (Role.ADMIN, Role.AUTHORITY, Role.OWNER)
_WEBHOOK_SECRET = "alert-webhook:"  # noqa: S105 - a keyring id prefix, not a secret
_CLAIM_S = 120.0  # a delivery being attempted is hidden from other workers this long


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _ts(epoch: float) -> str:
    """An audit entry's ``ts`` spelling of ``epoch`` (string order is time order)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="microseconds")


# --- reading ------------------------------------------------------------------------------------------------------


def _visible(actor: Actor) -> Any:
    """Which alerts ``actor`` reads: ``None`` all, else a condition (an owner: its own; others: none)."""
    a = t.alerts.c
    if actor.role in READ_ALL:
        return None
    if actor.role == Role.OWNER:
        return a.owner == actor.name
    return a.id.is_(None)  # nothing


def _may_read(actor: Actor, row: Any) -> bool:
    return actor.role in READ_ALL or (actor.role == Role.OWNER and row.owner == actor.name)


def public(row: Any, actor: Actor) -> dict[str, Any]:
    """An alert as ``actor`` reads it: the subject's hash only for the owner it concerns."""
    owner_view = actor.role == Role.OWNER and row.owner == actor.name
    return {
        "id": row.id,
        "rule": row.rule,
        "severity": row.severity,
        "owner": row.owner,
        "agreement_id": row.agreement_id,
        "dataset": row.dataset,
        "principal": row.principal,
        "subject_hash": row.subject_hash if owner_view else None,
        "window_start": _iso(row.window_start),
        "count": row.count,
        "details": json.loads(row.details),
        "created_at": _iso(row.created_at),
        "acked_at": _iso(row.acked_at),
        "acked_by": row.acked_by,
    }


def list_alerts(ctx: AppContext, actor: Actor, *, unacked: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """The alerts ``actor`` reads, newest first."""
    a = t.alerts.c
    q = select(t.alerts)
    scope = _visible(actor)
    if scope is not None:
        q = q.where(scope)
    if unacked:
        q = q.where(a.acked_at.is_(None))
    with ctx.engine.connect() as conn:
        rows = conn.execute(q.order_by(a.created_at.desc(), a.id).limit(limit)).all()
    return [public(r, actor) for r in rows]


def acknowledge(
    ctx: AppContext, p: Principal, alert_id: str, ev: AuditEvent, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Acknowledge an alert (its owner, the authority, an admin); the request's entry commits with it. An alert
    acknowledged already stays as it was."""
    actor = Actor(p.name, p.role.value)
    stamp = (now or dt.datetime.now(dt.UTC)).timestamp()
    ev.details["alert_id"] = alert_id
    if actor.role not in ACK_ROLES:
        raise DomainError(
            POLICY_DENIED,
            f"role {p.role.value!r} reads alerts and does not acknowledge them",
            [{"reason": "role.not_allowed", "allowed_roles": sorted(r.value for r in ACK_ROLES)}],
        )
    with ctx.engine.begin() as conn:
        row = conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id).with_for_update()).first()
        if row is None or not _may_read(actor, row):
            raise not_found("alert")
        ev.agreement_id, ev.dataset = row.agreement_id, row.dataset
        if row.acked_at is None:
            conn.execute(update(t.alerts).where(t.alerts.c.id == alert_id).values(acked_at=stamp, acked_by=p.name))
            ev.details["rule"] = row.rule
            request_entry(ctx.audit, ev)(conn)
        row = conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).one()
    return public(row, actor)


# --- rules --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One condition a rule found: what it names and the key that makes it fire once."""

    rule: str
    key: str
    owner: str | None = None
    agreement_id: str | None = None
    dataset: str | None = None
    principal: str | None = None
    subject_hash: str | None = None
    window_start: float | None = None
    count: int | None = None
    details: dict[str, Any] | None = None


def _windows(now: float, width: float) -> list[tuple[float, float]]:
    """The previous and the current fixed window ``[k·w, (k+1)·w)`` at ``now``."""
    start = math.floor(now / width) * width
    return [(start - width, start), (start, start + width)]


def _dataset_owners(conn: Connection) -> dict[str, str]:
    return {r.name: r.owner for r in conn.execute(select(ct.datasets.c.name, ct.datasets.c.owner))}


def _budget_conditions(conn: Connection, ratio: float) -> Iterable[Condition]:
    b, ag = pt.budget_accounts.c, pt.agreements.c
    rows = conn.execute(
        select(
            b.agreement_id,
            b.dataset,
            b.epsilon_total,
            b.epsilon_spent,
            b.delta_total,
            b.delta_spent,
            ag.owner,
            ag.grantee,
        ).join_from(pt.budget_accounts, pt.agreements, ag.id == b.agreement_id)
    )
    for r in rows:
        shares = [
            from_db(spent) / from_db(total)
            for spent, total in ((r.epsilon_spent, r.epsilon_total), (r.delta_spent, r.delta_total))
            if from_db(total) > 0
        ]
        share = max(shares, default=Fraction(0))
        if share >= Fraction(str(ratio)):  # exact: 0.8 as 4/5, not the double just above it
            yield Condition(
                "budget",
                f"budget|{r.agreement_id}|{r.dataset}",
                owner=r.owner,
                agreement_id=r.agreement_id,
                dataset=r.dataset,
                details={"spent_share": round(float(share), 4), "threshold": ratio, "grantee": r.grantee},
            )


def _denied_conditions(conn: Connection, now: float, count: int, width: float) -> Iterable[Condition]:
    e = t.audit_entries.c
    for lo, hi in _windows(now, width):
        q = (
            select(e.actor, func.count().label("n"))
            .where(e.decision == "deny", e.role != SYSTEM, e.ts >= _ts(lo), e.ts < _ts(hi))
            .group_by(e.actor)
            .having(func.count() >= count)
        )
        for r in conn.execute(q):
            yield Condition(
                "denied",
                f"denied|{r.actor}|{int(lo)}",
                principal=r.actor,
                window_start=lo,
                count=int(r.n),
                details={"threshold": count, "window_s": width},
            )


def _check_conditions(
    conn: Connection, now: float, count: int, width: float, owners: dict[str, str]
) -> Iterable[Condition]:
    e = t.audit_entries.c
    for lo, hi in _windows(now, width):
        q = (
            select(
                e.subject_hash, e.dataset, func.count().label("n"), func.count(func.distinct(e.actor)).label("grantees")
            )
            .where(e.action.in_(CHECK_ACTIONS), e.subject_hash.is_not(None), e.ts >= _ts(lo), e.ts < _ts(hi))
            .group_by(e.subject_hash, e.dataset)
            .having(func.count() >= count)
        )
        for r in conn.execute(q):
            yield Condition(
                "checks",
                f"checks|{r.subject_hash}|{r.dataset}|{int(lo)}",
                owner=owners.get(r.dataset),
                dataset=r.dataset,
                subject_hash=r.subject_hash,
                window_start=lo,
                count=int(r.n),
                details={"threshold": count, "window_s": width, "grantees": int(r.grantees)},
            )


def _incident_conditions(
    conn: Connection, now: float, count: int, width: float, owners: dict[str, str]
) -> Iterable[Condition]:
    e = t.audit_entries.c
    for lo, hi in _windows(now, width):
        per: dict[str, int] = {}
        q = select(e.dataset).where(e.action == AuditAction.JOB_INCIDENT, e.ts >= _ts(lo), e.ts < _ts(hi))
        for (datasets,) in conn.execute(q):
            for name in filter(None, (datasets or "").split(",")):
                per[name] = per.get(name, 0) + 1
        for name, n in sorted(per.items()):
            if n >= count:
                yield Condition(
                    "incidents",
                    f"incidents|{name}|{int(lo)}",
                    owner=owners.get(name),
                    dataset=name,
                    window_start=lo,
                    count=n,
                    details={"threshold": count, "window_s": width},
                )


def conditions(ctx: AppContext, now: dt.datetime, *, chain: bool = False) -> list[Condition]:
    """Every condition the rules find at ``now`` (the chain's verification only when ``chain``)."""
    s = ctx.settings
    at = now.timestamp()
    with ctx.engine.connect() as conn:
        owners = _dataset_owners(conn)
        found = [
            *_budget_conditions(conn, s.alert_budget_ratio),
            *_denied_conditions(conn, at, s.alert_denied_count, s.alert_denied_window_s),
            *_check_conditions(conn, at, s.alert_checks_count, s.alert_checks_window_s, owners),
            *_incident_conditions(conn, at, s.alert_incidents_count, s.alert_incidents_window_s, owners),
        ]
    if chain:
        report = ctx.audit.verify()
        if not report.ok:
            found.append(
                Condition(
                    "chain",
                    f"chain|{report.first_bad_seq}|{report.reason}",
                    details={"first_bad_seq": report.first_bad_seq, "reason": report.reason, "entries": report.entries},
                )
            )
    return found


def _exists(conn: Connection, key: str) -> bool:
    return conn.execute(select(t.alerts.c.id).where(t.alerts.c.condition_key == key)).first() is not None


def _subscribers(conn: Connection, c: Condition) -> list[str]:
    """The webhooks' subscribers that may read an alert on ``c`` (read in the raising transaction)."""
    w, pr = t.alert_webhooks.c, t.principals.c
    rows = conn.execute(
        select(w.subscriber, pr.role).join_from(t.alert_webhooks, t.principals, pr.name == w.subscriber)
    )
    return [r.subscriber for r in rows if r.role in READ_ALL or (r.role == Role.OWNER and c.owner == r.subscriber)]


def raise_alert(ctx: AppContext, c: Condition, now: dt.datetime) -> str | None:
    """Raise the alert of ``c`` unless its condition fired already: the row, its deliveries and its
    ``alert.raise`` entry in one transaction. Returns the new alert's id, or None."""
    alert_id = "alr_" + secrets.token_hex(8)
    at = now.timestamp()
    try:
        with ctx.engine.begin() as conn:
            if _exists(conn, c.key):
                return None
            conn.execute(
                t.alerts.insert().values(
                    id=alert_id,
                    rule=c.rule,
                    condition_key=c.key,
                    severity=SEVERITY[c.rule],
                    owner=c.owner,
                    agreement_id=c.agreement_id,
                    dataset=c.dataset,
                    principal=c.principal,
                    subject_hash=c.subject_hash,
                    window_start=c.window_start,
                    count=c.count,
                    details=json.dumps(c.details or {}, sort_keys=True, separators=(",", ":")),
                    created_at=at,
                )
            )
            for name in _subscribers(conn, c):
                conn.execute(
                    t.alert_deliveries.insert().values(
                        alert_id=alert_id,
                        subscriber=name,
                        state="pending",
                        attempts=0,
                        next_attempt_at=at,
                        updated_at=at,
                    )
                )
            ctx.audit.append_in(
                conn,
                AuditEvent(
                    actor="system",
                    role=SYSTEM,
                    action=AuditAction.ALERT_RAISE,
                    agreement_id=c.agreement_id,
                    dataset=c.dataset,
                    decision="allow",
                    details={
                        "alert_id": alert_id,
                        "rule": c.rule,
                        "severity": SEVERITY[c.rule],
                        "count": c.count,
                        "principal": c.principal,
                        **{k: v for k, v in (c.details or {}).items() if k in ("threshold", "window_s", "reason")},
                    },
                ),
            )
    except IntegrityError:  # another worker raised it between our check and our insert
        return None
    log.warning("alert %s raised: %s", alert_id, c.key.split("|")[0])
    return alert_id


def evaluate(ctx: AppContext, now: dt.datetime | None = None, *, chain: bool = False) -> list[str]:
    """The worker's duty: raise every condition found at ``now`` that has not fired yet; the new alerts' ids."""
    now = now or dt.datetime.now(dt.UTC)
    raised = []
    for c in conditions(ctx, now, chain=chain):
        alert_id = raise_alert(ctx, c, now)
        if alert_id is not None:
            raised.append(alert_id)
    return raised


# --- webhooks -----------------------------------------------------------------------------------------------------


class WebhookBody(BaseModel):  # ``PUT /alerts/webhooks/{subscriber}``
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, description="https:// (http:// only to a loopback host)")
    secret: SecretStr = Field(
        min_length=32,
        max_length=512,
        description="the HMAC key, at least 32 characters; stored wrapped by the master key, never shown again",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str) -> None:
    u = urlsplit(url)
    if u.scheme not in ("https", "http") or not u.hostname:
        raise invalid("a webhook is an https:// URL", [{"field": "url", "reason": "url.scheme"}])
    if u.scheme == "http" and not _is_loopback(u.hostname):
        raise invalid(
            "a webhook must use https (plain http only to a loopback host)",
            [{"field": "url", "reason": "url.plain_http"}],
        )


def _label(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}{u.path}"  # never the query: it may carry a token


def set_webhook(
    ctx: AppContext, p: Principal, subscriber: str, body: WebhookBody, ev: AuditEvent, now: dt.datetime | None = None
) -> dict[str, Any]:
    """An admin sets (or replaces) ``subscriber``'s webhook; the secret goes to the keyring, the request's entry
    (URL without its query, never the secret) commits with the row."""
    _check_url(body.url)
    sub = by_name(ctx.engine, subscriber)
    if sub is None or sub.role not in (*READ_ALL, Role.OWNER):
        raise invalid(
            "the subscriber is a principal that reads alerts (owner, authority, regulator, admin)",
            [{"field": "subscriber", "reason": "subscriber.unknown"}],
        )
    at = (now or dt.datetime.now(dt.UTC)).timestamp()
    ev.details.update(subscriber=subscriber, url=_label(body.url))
    secret_id = SECRET_PREFIX + _WEBHOOK_SECRET + subscriber
    ctx.keyring.destroy(secret_id)
    ctx.keyring.put_secret(_WEBHOOK_SECRET + subscriber, body.secret.get_secret_value().encode())
    with ctx.engine.begin() as conn:
        w = t.alert_webhooks
        if conn.execute(select(w.c.subscriber).where(w.c.subscriber == subscriber).with_for_update()).first():
            conn.execute(
                update(w).where(w.c.subscriber == subscriber).values(url=body.url, created_by=p.name, created_at=at)
            )
        else:
            conn.execute(w.insert().values(subscriber=subscriber, url=body.url, created_by=p.name, created_at=at))
        request_entry(ctx.audit, ev)(conn)
    return {"subscriber": subscriber, "url": _label(body.url), "created_by": p.name, "created_at": _iso(at)}


def list_webhooks(ctx: AppContext) -> list[dict[str, Any]]:
    """The webhooks (URLs without their query; secrets never)."""
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(t.alert_webhooks).order_by(t.alert_webhooks.c.subscriber)).all()
    return [
        {"subscriber": r.subscriber, "url": _label(r.url), "created_by": r.created_by, "created_at": _iso(r.created_at)}
        for r in rows
    ]


def remove_webhook(ctx: AppContext, subscriber: str, ev: AuditEvent) -> None:
    """Remove ``subscriber``'s webhook and its secret; its pending deliveries end as failed."""
    ev.details["subscriber"] = subscriber
    with ctx.engine.begin() as conn:
        gone = conn.execute(t.alert_webhooks.delete().where(t.alert_webhooks.c.subscriber == subscriber)).rowcount
        if not gone:
            raise not_found("webhook")
        d = t.alert_deliveries.c
        conn.execute(
            update(t.alert_deliveries)
            .where(d.subscriber == subscriber, d.state == "pending")
            .values(state="failed", last_error="webhook removed")
        )
        request_entry(ctx.audit, ev)(conn)
    ctx.keyring.destroy(SECRET_PREFIX + _WEBHOOK_SECRET + subscriber)


def sign(suite: str, key: bytes, timestamp: str, body: bytes) -> str:
    """The value of `SIGNATURE_HEADER`: ``hmac-<alg>=<hex>``, the HMAC of ``<timestamp>.<body>`` under ``key`` in
    the home's suite (``sha256`` for intl, ``sm3`` for sm)."""
    s = suite_of(suite)
    return f"hmac-{s.hash_name}={s.hmac_hex(key, timestamp.encode() + b'.' + body)}"


Post = Callable[[str, bytes, dict[str, str], float], None]


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 (scheme checked)
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (scheme checked when set)
        if not 200 <= resp.status < 300:
            raise OSError(f"HTTP {resp.status}")


def deliver_due(ctx: AppContext, now: dt.datetime | None = None, *, post: Post = _post, limit: int = 50) -> int:
    """Attempt every delivery due at ``now`` once; returns how many were attempted. Each attempt is claimed first
    (its next attempt moved ahead, conditionally: two workers never send one attempt), then its outcome and its
    ``alert.deliver`` entry commit together: delivered, pending again after the backoff, or failed after the last
    attempt."""
    s = ctx.settings
    at = (now or dt.datetime.now(dt.UTC)).timestamp()
    d = t.alert_deliveries.c
    with ctx.engine.connect() as conn:
        due = conn.execute(
            select(t.alert_deliveries)
            .where(d.state == "pending", d.next_attempt_at <= at)
            .order_by(d.next_attempt_at)
            .limit(limit)
        ).all()
    tried = 0
    for row in due:
        with ctx.engine.begin() as conn:
            claimed = conn.execute(
                update(t.alert_deliveries)
                .where(
                    d.alert_id == row.alert_id,
                    d.subscriber == row.subscriber,
                    d.state == "pending",
                    d.next_attempt_at == row.next_attempt_at,
                    d.attempts == row.attempts,
                )
                .values(next_attempt_at=at + _CLAIM_S)
            ).rowcount
        if not claimed:
            continue
        tried += 1
        _attempt(ctx, row, at, post, s.alert_webhook_attempts, s.alert_webhook_backoff_s, s.alert_webhook_timeout_s)
    return tried


def _attempt(
    ctx: AppContext, row: Any, at: float, post: Post, attempts: int, backoff_s: float, timeout_s: float
) -> None:
    attempt = row.attempts + 1
    error: str | None = None
    with ctx.engine.connect() as conn:
        alert = conn.execute(select(t.alerts).where(t.alerts.c.id == row.alert_id)).first()
        hook = conn.execute(select(t.alert_webhooks).where(t.alert_webhooks.c.subscriber == row.subscriber)).first()
    sub = by_name(ctx.engine, row.subscriber)
    key = ctx.keyring.secret(_WEBHOOK_SECRET + row.subscriber)
    url = hook.url if hook is not None else ""
    if alert is None or hook is None or sub is None or key is None:
        error = "webhook or subscriber removed"
        attempt = attempts  # nothing left to retry
    else:
        view = public(alert, Actor(sub.name, sub.role.value))
        body = json.dumps(
            {"format": FORMAT, "alert": view, "subscriber": row.subscriber, "attempt": attempt},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        stamp = str(int(at))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(ctx.settings.suite, key, stamp, body),
        }
        try:
            post(url, body, headers, timeout_s)
        except Exception as exc:  # any failure of the endpoint is one failed attempt
            error = f"{type(exc).__name__}: {exc}"[:300]
    if error is None:
        state, nxt = "delivered", at
    elif attempt >= attempts:
        state, nxt = "failed", at
    else:
        state, nxt = "pending", at + backoff_s * 2 ** (attempt - 1)
    details: dict[str, Any] = {
        "alert_id": row.alert_id,
        "subscriber": row.subscriber,
        "url": _label(url),
        "attempt": attempt,
        "outcome": state,
    }
    if error is not None:
        details["error"] = error
    if state == "pending":
        details["next_attempt_at"] = _iso(nxt)
    d = t.alert_deliveries.c
    with ctx.engine.begin() as conn:
        conn.execute(
            update(t.alert_deliveries)
            .where(d.alert_id == row.alert_id, d.subscriber == row.subscriber)
            .values(state=state, attempts=attempt, next_attempt_at=nxt, last_error=error, updated_at=at)
        )
        ctx.audit.append_in(
            conn,
            AuditEvent(
                actor="system",
                role=SYSTEM,
                action=AuditAction.ALERT_DELIVER,
                dataset=alert.dataset if alert else None,
                agreement_id=alert.agreement_id if alert else None,
                decision="allow" if state == "delivered" else "error",
                details=details,
            ),
        )


def deliveries(ctx: AppContext, alert_id: str | None = None) -> list[dict[str, Any]]:
    """Delivery states (admin view, tests)."""
    d = t.alert_deliveries.c
    q = select(t.alert_deliveries)
    if alert_id is not None:
        q = q.where(d.alert_id == alert_id)
    with ctx.engine.connect() as conn:
        rows = conn.execute(q.order_by(d.alert_id, d.subscriber)).all()
    return [
        {
            "alert_id": r.alert_id,
            "subscriber": r.subscriber,
            "state": r.state,
            "attempts": r.attempts,
            "next_attempt_at": _iso(r.next_attempt_at),
            "last_error": r.last_error,
        }
        for r in rows
    ]


# --- the worker's duty --------------------------------------------------------------------------------------------


class AlertDuty:
    """The job worker's alert duty (`gateway.worker`): every ``alert_every_s`` it evaluates the rules (the chain
    every ``alert_chain_every_s``) and attempts the due deliveries, on a thread of its own so a slow webhook never
    holds up a job; at most one run at a time. The first run is one interval after start (the store's state
    settles first: recovery, sweeps). ``clock`` is injectable."""

    def __init__(self, ctx: AppContext, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.clock = clock
        self._last: float | None = clock()
        self._chained: float | None = None
        self._busy = threading.Lock()

    def due(self) -> bool:
        return self._last is None or self.clock() - self._last >= self.ctx.settings.alert_every_s

    def tick(self) -> None:
        if not self.due():
            return
        self._last = self.clock()
        chain = self._chained is None or self._last - self._chained >= self.ctx.settings.alert_chain_every_s
        if chain:
            self._chained = self._last
        evaluate(self.ctx, chain=chain)
        deliver_due(self.ctx)

    def tick_in_background(self) -> None:
        if not self.due() or not self._busy.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self.tick()
            except Exception:  # a store hiccup or a broken rule: next time
                log.exception("alert evaluation failed")
            finally:
                self._busy.release()

        threading.Thread(target=run, name="veilbox-alerts", daemon=True).start()
