"""Idempotent retries of charging calls (docs/api.md, "Retries").

A caller may send ``Idempotency-Key: <1–128 visible ASCII characters>`` on every call that charges or counts:
``POST /v1/queries``, ``POST /v1/jobs``, the plain, encrypted and anonymous verification checks, model scores
and ``POST /v1/secagg/rounds``. Keys are per principal (table ``idempotency_keys``, primary key principal and
key). The key is reserved in its own transaction before the route's service runs (`reserve`, a dependency of
those routes); the answer that leaves the gateway is stored when the call ends (`Recorder`, an ASGI middleware
outside the audit middleware, so it stores exactly the bytes the caller got):

- the same key, the same request (SHA-256 over method, path and the canonical JSON body) and a stored answer:
  that answer again, status and body byte-identical, charged and counted once; the replay is audited under the
  route's name with ``details.idempotency = "replay"``;
- the same key and the same request still running: ``ALREADY_EXISTS`` reason ``idempotency.in_progress``;
- the same key with another request: ``INVALID_REQUEST`` reason ``idempotency.key_reused``;
- a malformed key: ``INVALID_REQUEST`` reason ``idempotency.key_invalid``.

What is stored: every answer below 500 except ``429`` (a refusal such as ``POLICY_DENIED`` is replayed as the
same refusal; a transient ``QUOTA_EXCEEDED`` is not kept, so the retry runs again). A ``5xx`` answer, an
unexpected exception or a call that never completed deletes the reservation, so the retry runs afresh. Keys older
than `RETENTION` are removed lazily, on every reservation. A replay reveals nothing the first answer did not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.errors import ALREADY_EXISTS, INVALID_REQUEST, DomainError
from gateway import _tables as t
from gateway import strict_json
from gateway.deps import Audit, Ctx, CurrentPrincipal

__all__ = ["HEADER", "INVALID_KEY_REASON", "IN_PROGRESS_REASON", "RETENTION", "REUSED_REASON", "Idempotent",
           "Recorder", "Replay", "replay_response", "reserve"]

HEADER = "Idempotency-Key"
RETENTION = dt.timedelta(hours=24)
REUSED_REASON = "idempotency.key_reused"
IN_PROGRESS_REASON = "idempotency.in_progress"
INVALID_KEY_REASON = "idempotency.key_invalid"
_STATE_KEY = "veilbox.idempotency"


@dataclass(frozen=True)
class Reservation:
    engine: Engine
    principal: str
    key: str


class Replay(Exception):
    """Raised by `reserve` to answer with the stored first answer (`replay_response`)."""

    def __init__(self, status_code: int, body: bytes) -> None:
        super().__init__("idempotent replay")
        self.status_code, self.body = status_code, body


async def replay_response(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)
    return Response(exc.body, status_code=exc.status_code, media_type="application/json")


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= 128 and all(0x21 <= ord(c) <= 0x7E for c in key)


def request_hash(method: str, path: str, body: bytes) -> str:
    """SHA-256 over the method, the path and the canonical JSON body (raw bytes when not JSON)."""
    try:
        canon = json.dumps(strict_json.loads(body), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode() if body else b""
    except strict_json.NotStrictJSON:
        canon = body
    h = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canon):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _claim(engine: Engine, principal: str, key: str, digest: str) -> tuple[str, int | None, bytes | None] | None:
    """Reserve the key (None) or return the existing row's (hash, status, body), state in one transaction."""
    now = _now()
    with engine.begin() as conn:
        conn.execute(delete(t.idempotency_keys).where(t.idempotency_keys.c.created_at < now - RETENTION))
    try:
        with engine.begin() as conn:
            conn.execute(insert(t.idempotency_keys).values(principal=principal, key=key, request_hash=digest,
                                                           state="running", status_code=None, body=None,
                                                           created_at=now))
        return None
    except IntegrityError:
        pass
    with engine.connect() as conn:
        row = conn.execute(select(t.idempotency_keys.c.request_hash, t.idempotency_keys.c.state,
                                  t.idempotency_keys.c.status_code, t.idempotency_keys.c.body)
                           .where(and_(t.idempotency_keys.c.principal == principal,
                                       t.idempotency_keys.c.key == key))).first()
    if row is None:  # removed between the insert and the read: the caller retries
        return (digest, None, None)
    if row.request_hash != digest:
        return (row.request_hash, None, None)
    if row.state != "done":
        return (digest, None, None)
    return (digest, int(row.status_code), row.body.encode())


async def reserve(request: Request, p: CurrentPrincipal, ctx: Ctx, ev: Audit,
                  key: Annotated[str | None, Header(
                      alias=HEADER, description="1–128 visible ASCII characters: a retry with the same key and the "
                      "same request returns the first answer, charged once (docs/api.md, \"Retries\")")] = None,
                  ) -> None:
    """The dependency of every charging route: reserve the caller's key before the service runs, or answer
    with the stored first answer (`Replay`), or refuse (module docstring)."""
    if key is None:
        return
    if not _valid_key(key):
        raise DomainError(INVALID_REQUEST, "the Idempotency-Key header is not 1 to 128 visible ASCII characters",
                          [{"loc": ["header", HEADER], "reason": INVALID_KEY_REASON}])
    digest = request_hash(request.method, request.url.path, await request.body())
    found = await run_in_threadpool(_claim, ctx.engine, p.id, key, digest)
    if found is None:
        request.scope.setdefault("state", {})[_STATE_KEY] = Reservation(ctx.engine, p.id, key)
        return
    stored_hash, status, body = found
    if stored_hash != digest:
        ev.details["reason"] = REUSED_REASON
        raise DomainError(INVALID_REQUEST, "this Idempotency-Key was used for another request",
                          [{"loc": ["header", HEADER], "reason": REUSED_REASON}])
    if status is None or body is None:
        ev.details["reason"] = IN_PROGRESS_REASON
        raise DomainError(ALREADY_EXISTS, "a request with this Idempotency-Key is still running; retry later",
                          [{"loc": ["header", HEADER], "reason": IN_PROGRESS_REASON}])
    ev.details["idempotency"] = "replay"
    raise Replay(status, body)


Idempotent = Annotated[None, Depends(reserve)]


def _finish(r: Reservation, status: int | None, body: bytes) -> None:
    where = and_(t.idempotency_keys.c.principal == r.principal, t.idempotency_keys.c.key == r.key)
    with r.engine.begin() as conn:
        if status is not None and status < 500 and status != 429:
            conn.execute(update(t.idempotency_keys).where(where)
                         .values(state="done", status_code=status, body=body.decode("utf-8", "replace")))
        else:
            conn.execute(delete(t.idempotency_keys).where(where))


class Recorder:
    """ASGI middleware: when the call reserved a key (`reserve`), store the answer that left, or delete the
    reservation when it is not kept (a 5xx, a 429, an exception, a call that never completed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":  # only POST calls reserve keys
            await self.app(scope, receive, send)
            return
        status: int | None = None
        chunks: list[bytes] = []
        complete = finished = False

        def reservation() -> Reservation | None:
            r = scope.get("state", {}).get(_STATE_KEY)
            return r if isinstance(r, Reservation) else None

        async def capture(message: Message) -> None:
            nonlocal status, complete, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                complete = not message.get("more_body", False)
                r = reservation()
                if complete and r is not None:
                    # Stored before the last byte leaves: a retry sent the moment the caller has the answer
                    # replays it (stored after, the retry could still find the key in progress).
                    await run_in_threadpool(_finish, r, status, b"".join(chunks))
                    finished = True
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            r = reservation()
            if r is not None and not finished:
                await run_in_threadpool(_finish, r, status if complete else None, b"".join(chunks))
