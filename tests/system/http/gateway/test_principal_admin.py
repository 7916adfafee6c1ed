"""An admin's changes to a principal over HTTP: disable and enable, rotate the token, set its expiry. Each is
refused to every other role, commits with its audit entry, and withdraws access at once (the next call is
refused with a stable code and reason; the principal's console sessions end)."""

import datetime as dt
import json

import pytest
from sqlalchemy import select

from gateway import _tables as t
from gateway.console._web import session_store
from gateway.identities import Principal, RoleName
from veilbox.client import ApiError

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgresql"])


def refusal(fn):
    with pytest.raises(ApiError) as ei:
        fn()
    e = ei.value
    return e.code, e.status, [d.get("reason") for d in (e.details or [])]


def _session(service, name):
    me = next(r for r in service.admin.principals() if r["name"] == name)
    value, _ = session_store(service.ctx).create(Principal(me["id"], name, RoleName(me["role"])))
    return value


def _revoked(service, value):
    import hashlib

    with service.ctx.engine.connect() as conn:
        return conn.execute(select(t.console_sessions.c.revoked).where(
            t.console_sessions.c.id_hash == hashlib.sha256(value.encode()).hexdigest())).scalar_one()


def _entries(service, action):
    e = t.audit_entries.c
    with service.ctx.engine.connect() as conn:
        return [json.loads(r.details) | {"actor": r.actor, "decision": r.decision}
                for r in conn.execute(select(e.actor, e.details, e.decision).where(e.action == action))]


def test_disable_rotate_expire(service, store):
    admin = service.admin
    bank = service.principal("icbc-wuxi", "bank")
    owner = service.principal("city-tax", "owner")
    # only an admin may change principals
    for call in (lambda: owner.disable_principal("icbc-wuxi"), lambda: owner.enable_principal("icbc-wuxi"),
                 lambda: bank.rotate_principal("icbc-wuxi"),
                 lambda: owner.expire_principal("icbc-wuxi", "2000-01-01T00:00:00Z")):
        assert refusal(call)[:2] == ("POLICY_DENIED", 403)
    assert refusal(lambda: admin.disable_principal("nobody"))[:2] == ("NOT_FOUND_OR_FORBIDDEN", 404)
    assert refusal(lambda: admin.disable_principal("admin"))[2] == ["principal.self"]
    listed = {r["name"]: r for r in admin.principals()}
    assert listed["icbc-wuxi"]["disabled"] is False and listed["icbc-wuxi"]["created_by"] == "admin"

    # disable: the next call is refused, the console session ends; enable: it works again
    session = _session(service, "icbc-wuxi")
    assert admin.disable_principal("icbc-wuxi")["disabled"] is True
    assert refusal(bank.me) == ("UNAUTHENTICATED", 401, ["principal.disabled"])
    assert _revoked(service, session)
    assert admin.enable_principal("icbc-wuxi")["disabled"] is False
    assert bank.me()["name"] == "icbc-wuxi"

    # rotate: the old token is dead at once (like any unknown token), the new one works, sessions end
    session = _session(service, "icbc-wuxi")
    rotated = admin.rotate_principal("icbc-wuxi")
    assert rotated["token"].startswith("vbx_")
    assert refusal(bank.me) == ("UNAUTHENTICATED", 401, [])
    assert _revoked(service, session)
    bank = service.client(rotated["token"])
    assert bank.me()["name"] == "icbc-wuxi"

    # expiry: a future time keeps access, a past one ends it now
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    assert admin.expire_principal("icbc-wuxi", future)["expires_at"].startswith(future[:16])
    assert bank.me()["name"] == "icbc-wuxi"
    session = _session(service, "icbc-wuxi")
    admin.expire_principal("icbc-wuxi", "2000-01-01T00:00:00Z")
    assert refusal(bank.me) == ("UNAUTHENTICATED", 401, ["token.expired"])
    assert _revoked(service, session)
    assert refusal(lambda: admin.expire_principal("admin", "2000-01-01T00:00:00Z"))[2] == ["principal.self"]

    # every change is in the log with its name, by the admin; the refusals too
    for action, n in (("principal.disable", 1), ("principal.enable", 1), ("principal.rotate", 1),
                      ("principal.expiry", 2)):
        allowed = [e for e in _entries(service, action) if e["decision"] == "allow"]
        assert len(allowed) == n and all(e["name"] == "icbc-wuxi" and e["actor"] == "admin" for e in allowed)
    assert any(e["actor"] == "city-tax" and e["decision"] == "deny" for e in _entries(service, "principal.disable"))
