"""Console sessions: a bearer token is exchanged once for a session cookie; forms carry a CSRF token.

- **Login** takes a principal's token, checks it like the API does (`identities.authenticate`) and creates a new
  session: a fresh 256-bit random cookie value (never reused, so a planted cookie cannot be "upgraded" by a login —
  no session fixation), of which only the hash is stored (the home's suite: SHA-256 or SM3), and a fresh 256-bit
  CSRF token bound to it.
- **Cookie:** ``veilbox_console``, ``HttpOnly``, ``SameSite=Strict``, ``Path=/console``, ``Secure`` when the
  service is behind TLS (``VEILBOX_TLS_TERMINATED``).
- **Expiry:** idle (``VEILBOX_CONSOLE_IDLE_MINUTES``, default 30) and absolute (``VEILBOX_CONSOLE_SESSION_HOURS``,
  default 8); a disabled or expired principal ends its sessions at their next request; logout revokes.
- **CSRF:** every state-changing form carries the session's token (synchronizer token pattern) and is compared
  in constant time; the login form, which has no session yet, uses a double-submit cookie. ``SameSite=Strict``
  and an ``Origin`` check are further layers, not the defence.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, select

from cryptosuite import Suite, suite_of
from gateway import _tables as t
from gateway.identities import Principal, RoleName
from vocab.i18n import _

COOKIE = "veilbox_console"
LOGIN_CSRF_COOKIE = "veilbox_console_login"
COOKIE_PATH = "/console"

__all__ = ["COOKIE", "COOKIE_PATH", "LOGIN_CSRF_COOKIE", "Session", "SessionEnded", "SessionStore", "same_token"]


class SessionEnded(Exception):
    """No usable session; ``reason`` says why (shown on the login page)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


INTL = suite_of("intl")


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: dt.datetime


def _hash(value: str, suite: Suite = INTL) -> str:
    """What the store keeps of a session cookie: its hash with the home's suite (SHA-256 or SM3)."""
    return suite.hexdigest(value.encode())


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


class SessionStore:
    def __init__(self, engine: Engine, idle: dt.timedelta, absolute: dt.timedelta,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC), suite: Suite = INTL) -> None:
        self.engine, self.idle, self.absolute, self.clock, self.suite = engine, idle, absolute, clock, suite

    def create(self, principal: Principal) -> tuple[str, Session]:
        """A new session for ``principal``; returns the cookie value (shown once) and the session."""
        value, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        expires = now + self.absolute
        with self.engine.begin() as conn:
            conn.execute(t.console_sessions.insert().values(
                id_hash=_hash(value, self.suite), principal_id=principal.id, csrf=csrf, created_at=now, last_seen=now,
                expires_at=expires, revoked=False))
        return value, Session(principal, csrf, expires)

    def load(self, value: str | None) -> Session:
        """The live session behind a cookie value (and mark it seen), or `SessionEnded` with the reason."""
        if not value or len(value) > 100:
            raise SessionEnded(_("Please sign in."))
        now = self.clock()
        s, p = t.console_sessions, t.principals
        with self.engine.begin() as conn:
            row = conn.execute(select(s, p.c.name, p.c.role, p.c.disabled, p.c.expires_at.label("p_expires"))
                               .join(p, p.c.id == s.c.principal_id)
                               .where(s.c.id_hash == _hash(value, self.suite))).first()
            if row is None or row.revoked:
                raise SessionEnded(_("Your session has ended. Please sign in again."))
            if _aware(row.expires_at) <= now:
                raise SessionEnded(_("Your session expired (maximum session length reached). Please sign in again."))
            if _aware(row.last_seen) + self.idle <= now:
                conn.execute(s.update().where(s.c.id_hash == row.id_hash).values(revoked=True))
                raise SessionEnded(_("Your session expired after inactivity. Please sign in again."))
            if row.disabled or _aware(row.p_expires) <= now:
                conn.execute(s.update().where(s.c.id_hash == row.id_hash).values(revoked=True))
                raise SessionEnded(_("Your access has been withdrawn or has expired."))
            conn.execute(s.update().where(s.c.id_hash == row.id_hash).values(last_seen=now))
        return Session(Principal(row.principal_id, row.name, RoleName(row.role)), row.csrf, _aware(row.expires_at))

    def revoke(self, value: str | None) -> None:
        if value:
            with self.engine.begin() as conn:
                conn.execute(t.console_sessions.update().where(t.console_sessions.c.id_hash == _hash(value, self.suite))
                             .values(revoked=True))
