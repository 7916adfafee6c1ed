"""Principals and bearer tokens.

Tokens are 256-bit random strings shown once at creation; only their SHA-256 is stored (a high-entropy token
needs no slow hash). Lookup is by hash, so token comparison never leaks timing about stored values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from catalog.errors import ALREADY_EXISTS, DomainError, invalid
from gateway import _tables as t
from vocab.roles import Role

TOKEN_PREFIX = "vbx_"  # noqa: S105 - a public prefix, not a secret
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


#: A principal's role: `vocab.roles.Role` (the name the gateway's callers know it by).
RoleName = Role


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    role: RoleName


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_principal(engine: Engine, name: str, role: str, created_by: str | None,
                     ttl_days: int = 365) -> tuple[Principal, str]:
    """Create a principal; returns it and its token (the only time the token is visible)."""
    if not NAME_RE.match(name):
        raise invalid("name must be 2-63 characters of a-z, 0-9, '.', '_' or '-'",
                      [{"field": "name", "problem": "pattern"}])
    try:
        role_ = RoleName(role)
    except ValueError:
        raise invalid("unknown role", [{"field": "role", "allowed": [r.value for r in RoleName]}]) from None
    token = new_token()
    now = dt.datetime.now(dt.UTC)
    pid = "p_" + secrets.token_hex(8)
    try:
        with engine.begin() as conn:
            conn.execute(t.principals.insert().values(
                id=pid, name=name, role=role_.value, token_hash=hash_token(token), created_at=now,
                created_by=created_by, expires_at=now + dt.timedelta(days=ttl_days), disabled=False))
    except IntegrityError:
        raise DomainError(ALREADY_EXISTS, "a principal with this name already exists") from None
    return Principal(pid, name, role_), token


def authenticate(engine: Engine, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.connect() as conn:
        r = conn.execute(select(t.principals).where(t.principals.c.token_hash == hash_token(token))).first()
    return _usable(r)


def _usable(r: Any) -> Principal | None:
    """The principal of store row ``r`` if it can act now (present, not disabled, token not expired)."""
    if r is None or r.disabled:
        return None
    expires = r.expires_at if r.expires_at.tzinfo else r.expires_at.replace(tzinfo=dt.UTC)
    if expires <= dt.datetime.now(dt.UTC):
        return None
    return Principal(r.id, r.name, RoleName(r.role))


def by_name(engine: Engine, name: str) -> Principal | None:
    with engine.connect() as conn:
        r = conn.execute(select(t.principals).where(t.principals.c.name == name)).first()
    return Principal(r.id, r.name, RoleName(r.role)) if r else None


def usable_by_name(engine: Engine, name: str) -> Principal | None:
    """The principal called ``name`` if it can act now (not disabled, token not expired), else ``None``: callers
    that check names someone else supplied answer "unknown" and "disabled" alike."""
    with engine.connect() as conn:
        r = conn.execute(select(t.principals).where(t.principals.c.name == name)).first()
    return _usable(r)


def list_principals(engine: Engine) -> list[Principal]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.principals).order_by(t.principals.c.name)).all()
    return [Principal(r.id, r.name, RoleName(r.role)) for r in rows]
