"""Principals and bearer tokens.

Tokens are 256-bit random strings shown once at creation; only a peppered hash is stored: the suite's HMAC
(HMAC-SHA256, or HMAC-SM3 in an `sm` home) under the service's token pepper (a secret wrapped by the master key,
`gateway.keys.Pepper`, which names the suite) of the token's hash (SHA-256 or SM3; a high-entropy token needs no
slow hash). Without the pepper, write access to the store cannot mint a token (a row for a token of
one's own choosing needs its peppered hash). Lookup is by hash, so token comparison never leaks timing about stored
values. A store from before the pepper kept the plain SHA-256: `pepper_stored_hashes` turns each into its peppered
form once, when the home is opened (a keyed hash of what is stored, so every token keeps working).

An admin manages principals (`disable`, `enable`, `rotate`, `set_expiry`): each change commits in one
transaction with its audit entry (the caller's ``journal``, `gateway.journal`) and with the revocation of the
principal's console sessions (disabling, rotating, or an expiry already past), so the principal's next call —
API or console — is refused: ``UNAUTHENTICATED`` with reason ``principal.disabled`` or ``token.expired`` for a
token that was valid (`refusal_reason`), none for a token that never was or was rotated away (its hash is no
longer stored). A rotated token is dead the moment the rotation commits; the new one is returned once.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from catalog.errors import ALREADY_EXISTS, NOT_FOUND_OR_FORBIDDEN, DomainError, invalid
from cryptosuite import Suite, suite_of
from gateway import _tables as t
from gateway.journal import Journal
from vocab.roles import ReviewerKind, Role

TOKEN_PREFIX = "vbx_"  # noqa: S105 - a public prefix, not a secret
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


#: A principal's role: `vocab.roles.Role` (the name the gateway's callers know it by).
RoleName = Role


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    role: RoleName


#: ``service_meta`` key recording that the stored token hashes are peppered.
#: (The value names the intl scheme; an `sm` home peppers with HMAC-SM3 of the SM3 hash, by its `Pepper`.)
HASH_SCHEME_KEY, HASH_SCHEME = "token_hash", "hmac-sha256(pepper, sha256)"


def _suite(pepper: bytes) -> Suite:
    """The suite a pepper hashes under (`gateway.keys.Pepper` names it; plain bytes: intl)."""
    return suite_of(getattr(pepper, "suite_name", "intl"))


def _pepper(stored: str, pepper: bytes) -> str:
    if len(pepper) < 32:
        raise ValueError("the token pepper is 32 bytes")
    return _suite(pepper).hmac_hex(bytes(pepper), stored.encode())


def hash_token(token: str, pepper: bytes) -> str:
    """The stored form of ``token``: its hash (SHA-256, or SM3 in an `sm` home), keyed by the service's pepper
    under the same suite's HMAC."""
    return _pepper(_suite(pepper).hexdigest(token.encode()), pepper)


def pepper_stored_hashes(engine: Engine, pepper: bytes) -> int:
    """Pepper the plain SHA-256 token hashes of a store from before the pepper, once (recorded in
    ``service_meta``, in the same transaction). Returns how many were rewritten."""
    with engine.begin() as conn:
        done = conn.execute(select(t.service_meta.c.value).where(t.service_meta.c.key == HASH_SCHEME_KEY)
                            .with_for_update()).first()
        if done is not None:
            return 0
        rows = conn.execute(select(t.principals.c.id, t.principals.c.token_hash)).all()
        for pid, stored in rows:
            conn.execute(t.principals.update().where(t.principals.c.id == pid)
                         .values(token_hash=_pepper(stored, pepper)))
        conn.execute(t.service_meta.insert().values(key=HASH_SCHEME_KEY, value=HASH_SCHEME))
    return len(rows)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _reviewer_kind(role: RoleName, kind: str | None) -> str | None:
    """A named reviewer's kind: required for role ``reviewer`` (``expert_committee`` | ``cyberspace``), refused for
    any other role."""
    if role is not RoleName.REVIEWER:
        if kind is not None:
            raise invalid("only a reviewer has a reviewer kind", [{"field": "reviewer_kind", "problem": "role"}])
        return None
    try:
        return ReviewerKind(kind or "").value
    except ValueError:
        raise invalid("a reviewer needs its kind", [{"field": "reviewer_kind",
                                                     "allowed": [k.value for k in ReviewerKind]}]) from None


def create_principal(engine: Engine, name: str, role: str, created_by: str | None,
                     ttl_days: int = 365, *, pepper: bytes, reviewer_kind: str | None = None) -> tuple[Principal, str]:
    """Create a principal; returns it and its token (the only time the token is visible). A ``reviewer`` (a named
    reviewer: expert committee 专家委员会, cyberspace administration 网信) takes its ``reviewer_kind``."""
    if not NAME_RE.match(name):
        raise invalid("name must be 2-63 characters of a-z, 0-9, '.', '_' or '-'",
                      [{"field": "name", "problem": "pattern"}])
    try:
        role_ = RoleName(role)
    except ValueError:
        raise invalid("unknown role", [{"field": "role", "allowed": [r.value for r in RoleName]}]) from None
    kind = _reviewer_kind(role_, reviewer_kind)
    token = new_token()
    now = dt.datetime.now(dt.UTC)
    pid = "p_" + secrets.token_hex(8)
    try:
        with engine.begin() as conn:
            conn.execute(t.principals.insert().values(
                id=pid, name=name, role=role_.value, token_hash=hash_token(token, pepper), created_at=now,
                created_by=created_by, expires_at=now + dt.timedelta(days=ttl_days), disabled=False,
                reviewer_kind=kind))
    except IntegrityError:
        raise DomainError(ALREADY_EXISTS, "a principal with this name already exists") from None
    return Principal(pid, name, role_), token


def authenticate(engine: Engine, token: str, *, pepper: bytes) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.connect() as conn:
        r = conn.execute(select(t.principals).where(t.principals.c.token_hash == hash_token(token, pepper))).first()
    return _usable(r)


def _usable(r: Any) -> Principal | None:
    """The principal of store row ``r`` if it can act now (present, not disabled, token not expired)."""
    if r is None or r.disabled:
        return None
    expires = r.expires_at if r.expires_at.tzinfo else r.expires_at.replace(tzinfo=dt.UTC)
    if expires <= dt.datetime.now(dt.UTC):
        return None
    return Principal(r.id, r.name, RoleName(r.role))


def refusal_reason(engine: Engine, token: str, *, pepper: bytes) -> str | None:
    """Why a token that `authenticate` refused was refused, when it names a principal (its holder already
    knows it): ``principal.disabled`` or ``token.expired``; ``None`` for a token unknown or rotated away."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.connect() as conn:
        r = conn.execute(select(t.principals.c.disabled)
                         .where(t.principals.c.token_hash == hash_token(token, pepper))).first()
    if r is None:
        return None
    return "principal.disabled" if r.disabled else "token.expired"


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


@dataclass(frozen=True)
class PrincipalRecord:
    """A principal as an admin sees it: who, which role, since when, until when, and whether disabled."""

    id: str
    name: str
    role: RoleName
    created_at: dt.datetime
    created_by: str | None
    expires_at: dt.datetime
    disabled: bool
    reviewer_kind: str | None = None  # a named reviewer's kind (role ``reviewer``)

    @property
    def expired(self) -> bool:
        return self.expires_at <= dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _record(r: Any) -> PrincipalRecord:
    return PrincipalRecord(r.id, r.name, RoleName(r.role), _aware(r.created_at), r.created_by, _aware(r.expires_at),
                           bool(r.disabled), r.reviewer_kind)


def named_reviewers(engine: Engine, names: list[str]) -> dict[str, str]:
    """Name → kind for named reviewers the data authority requires on an agreement; ``INVALID_REQUEST`` naming any
    that is not a usable principal with role ``reviewer`` (the authority sees every principal anyway)."""
    out: dict[str, str] = {}
    bad = []
    for name in sorted(set(names)):
        p = usable_by_name(engine, name)
        rec = next((r for r in records(engine) if r.name == name), None) if p is not None else None
        if p is None or p.role is not RoleName.REVIEWER or rec is None or rec.reviewer_kind is None:
            bad.append({"field": "reviewers", "reason": "reviewer.unknown", "name": name})
        else:
            out[name] = rec.reviewer_kind
    if bad:
        raise invalid("each named reviewer is an enabled principal with role reviewer", bad)
    return out


def records(engine: Engine) -> list[PrincipalRecord]:
    """Every principal with its state, by name (admin views)."""
    with engine.connect() as conn:
        return [_record(r) for r in conn.execute(select(t.principals).order_by(t.principals.c.name))]


def names_by_id(engine: Engine) -> dict[str, str]:
    """Principal id → name (to show names beside ids)."""
    with engine.connect() as conn:
        return {r.id: r.name for r in conn.execute(select(t.principals.c.id, t.principals.c.name))}


def _change(engine: Engine, name: str, journal: Journal | None, **values: Any) -> PrincipalRecord:
    """Update principal ``name`` with ``values`` and revoke its console sessions when ``values`` withdraw its
    access, then write ``journal``: one transaction (`gateway.journal`)."""
    p = t.principals
    with engine.begin() as conn:
        row = conn.execute(select(p).where(p.c.name == name).with_for_update()).first()
        if row is None:
            raise DomainError(NOT_FOUND_OR_FORBIDDEN, "no principal has this name")
        conn.execute(p.update().where(p.c.id == row.id).values(**values))
        after = conn.execute(select(p).where(p.c.id == row.id)).one()
        rec = _record(after)
        if rec.disabled or rec.expired or "token_hash" in values:
            _revoke_sessions(conn, rec.id)
        if journal is not None:
            journal(conn)
    return rec


def _revoke_sessions(conn: Connection, principal_id: str) -> None:
    s = t.console_sessions
    conn.execute(s.update().where(s.c.principal_id == principal_id, s.c.revoked.is_(False)).values(revoked=True))


def _not_self(name: str, admin: str | None, what: str) -> None:
    if admin is not None and name == admin:
        raise invalid(f"an admin cannot {what} their own principal", [{"field": "name", "reason": "principal.self"}])


def disable(engine: Engine, name: str, journal: Journal | None = None, admin: str | None = None) -> PrincipalRecord:
    """Disable principal ``name``: its token is refused from now on and its console sessions end."""
    _not_self(name, admin, "disable")
    return _change(engine, name, journal, disabled=True)


def enable(engine: Engine, name: str, journal: Journal | None = None) -> PrincipalRecord:
    """Enable principal ``name`` again (its token, unless expired or rotated, works again)."""
    return _change(engine, name, journal, disabled=False)


def rotate(engine: Engine, name: str, journal: Journal | None = None, *,
           pepper: bytes) -> tuple[PrincipalRecord, str]:
    """Give principal ``name`` a new token (returned once); the old one is dead when this returns, and the
    principal's console sessions end."""
    token = new_token()
    return _change(engine, name, journal, token_hash=hash_token(token, pepper)), token


def set_expiry(engine: Engine, name: str, expires_at: dt.datetime, journal: Journal | None = None,
               admin: str | None = None) -> PrincipalRecord:
    """Set when principal ``name``'s token stops working (UTC when naive); a time already past ends its access
    and its console sessions now."""
    expires_at = _aware(expires_at).astimezone(dt.UTC)
    if expires_at <= dt.datetime.now(dt.UTC):
        _not_self(name, admin, "expire")
    return _change(engine, name, journal, expires_at=expires_at)
