"""The audit log (全程留痕): an append-only hash chain with signed checkpoints.

Guarantee. Entry ``i`` stores ``hash_i = H(prev_hash ‖ canonical(entry_i))`` with ``H`` the hash of the home's
cryptographic suite (SHA-256 for ``intl``, SM3 for ``sm``; fixed at ``veilbox init --suite``, recorded in the
store). Every ``checkpoint_every`` entries the pair ``(seq, hash)`` is signed with the service's key (Ed25519 or
SM2, `gateway.keys`, `cryptosuite`), and the head ``(seq, hash)`` is re-signed on every append. Verification
recomputes the whole chain and checks every signature, so

- a modified, inserted, deleted or reordered entry breaks the chain at its ``seq``;
- rewriting the chain from an entry onward (no signing key) breaks the next checkpoint or the head;
- truncating the tail breaks the head.

Verification works on the signed head it reads first: entries appended while it runs are left for the next
run, so a busy log never looks broken; a tail of entries that no signed head covers is still reported, from
one consistent read of the newest ``seq`` and the head.

Appends are serialised (process lock + a database write lock: ``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE``
on PostgreSQL) and committed with ``synchronous=FULL`` before the caller's response is sent.

Entries carry no raw values: subject identifiers only as keyed hashes, outputs only as digests.
Known limit: an attacker holding an *older* signed head could truncate back to it; anchoring checkpoints
outside the host (regulators export them, see ``GET /v1/audit/export``) closes that.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, Select, and_, false, func, or_, select

from catalog.fingerprint import HashAlg, hasher
from cryptosuite import VerifyKey, load_verify_key
from gateway import _tables as t
from gateway.keys import Keys
from vocab.actions import INCIDENT_ACTIONS, AuditAction
from vocab.roles import ANALYSTS, SYSTEM, Role

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code", "epsilon",
          "delta", "output_digest", "subject_hash", "details", "prev_hash")


@dataclass
class AuditEvent:
    """What a request did; the middleware turns it into an entry in ``finally``."""

    actor: str = "anonymous"
    role: str = "none"
    action: str = AuditAction.REQUEST_UNKNOWN
    agreement_id: str | None = None
    dataset: str | None = None
    decision: str = "allow"
    code: str | None = None
    epsilon: str | None = None
    delta: str | None = None
    output_digest: str | None = None
    subject_hash: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: the entry a journal already wrote for this request in the transaction of its change (`gateway.journal`):
    #: the middleware then does not append it again
    written: Any = field(default=None, repr=False, compare=False)
    #: the middleware's completion of the entry (route name, path, expected status, duration), for a journal
    #: writing it before the handler returns
    complete: Any = field(default=None, repr=False, compare=False)


def canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps({k: entry[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def entry_hash(alg: HashAlg, entry: dict[str, Any]) -> str:
    h = hasher(alg)
    h.update(entry["prev_hash"].encode() + b"\n" + canonical(entry))
    return h.finalize().hex()


def _sig_message(seq: int, h: str) -> bytes:
    return f"veilbox-audit|{seq}|{h}".encode()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int
    head: str | None
    first_bad_seq: int | None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head": self.head,
                "first_bad_seq": self.first_bad_seq, "reason": self.reason}


_HEAD_FOR_UPDATE = select(t.audit_head).where(t.audit_head.c.id == 1).with_for_update()
_INSERT_ENTRY = t.audit_entries.insert()
_UPDATE_HEAD = t.audit_head.update().where(t.audit_head.c.id == 1)


class AuditLog:
    def __init__(self, engine: Engine, keys: Keys, alg: HashAlg, checkpoint_every: int = 100) -> None:
        self.engine = engine
        self.keys = keys
        self.alg = alg
        self.checkpoint_every = checkpoint_every
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------------------------
    def append(self, ev: AuditEvent) -> dict[str, Any]:
        """Append one entry in its own transaction (committed when this returns)."""
        with self._lock, self.engine.begin() as conn:
            return self.append_in(conn, ev)

    def append_in(self, conn: Connection, ev: AuditEvent) -> dict[str, Any]:
        """Append one entry inside the caller's transaction, so it commits (or rolls back) with the state change
        it records: both or neither. Call it as the transaction's last write: it locks the chain head until the
        commit (``BEGIN IMMEDIATE`` already serialises SQLite writers; on PostgreSQL the head row lock orders
        appends, and taking it last keeps lock order ledger/job rows → head in every transaction)."""
        head = conn.execute(_HEAD_FOR_UPDATE).first()
        seq = (head.seq if head else 0) + 1
        entry: dict[str, Any] = {
            "seq": seq,
            "ts": _now(),
            "actor": ev.actor,
            "role": ev.role,
            "action": ev.action,
            "agreement_id": ev.agreement_id,
            "dataset": ev.dataset,
            "decision": ev.decision,
            "code": ev.code,
            "epsilon": ev.epsilon,
            "delta": ev.delta,
            "output_digest": ev.output_digest,
            "subject_hash": ev.subject_hash,
            "details": json.dumps(ev.details, sort_keys=True, separators=(",", ":")),
            "prev_hash": head.hash if head else GENESIS,
        }
        entry["hash"] = entry_hash(self.alg, entry)
        conn.execute(_INSERT_ENTRY, entry)  # statements built once, the values bound: no per-call expression
        sig = self.keys.signing.sign(_sig_message(seq, entry["hash"])).hex()
        if seq % self.checkpoint_every == 0:
            conn.execute(t.audit_checkpoints.insert().values(
                seq=seq, hash=entry["hash"], signature=sig, key_id=self.keys.key_id, ts=entry["ts"]))
        values = {"seq": seq, "hash": entry["hash"], "signature": sig}
        if head:
            conn.execute(_UPDATE_HEAD, values)
        else:
            conn.execute(t.audit_head.insert().values(id=1, **values))
        return entry

    # -- reading -----------------------------------------------------------------------------------------
    def entries(self, since: int = 0, limit: int = 100, scope: Any = None) -> tuple[list[dict[str, Any]], int]:
        q: Select[Any] = select(t.audit_entries).where(t.audit_entries.c.seq > since)
        if scope is not None:
            q = q.where(scope)
        q = q.order_by(t.audit_entries.c.seq).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        nxt = rows[-1]["seq"] if rows else since
        return rows, nxt

    def iter_all(self, batch: int = 5000) -> Iterator[dict[str, Any]]:
        last = 0
        while True:
            rows, last = self.entries(since=last, limit=batch)
            if not rows:
                return
            yield from rows

    def export_parquet(self) -> bytes:
        cols: dict[str, list[Any]] = {k: [] for k in (*FIELDS, "hash")}
        for e in self.iter_all():
            for k in cols:
                cols[k].append(e[k])
        buf = io.BytesIO()
        pq.write_table(pa.table(cols), buf, compression="zstd")
        return buf.getvalue()

    # -- verification ------------------------------------------------------------------------------------
    def verify(self, public_key: VerifyKey | str | None = None) -> VerifyReport:
        """Recompute the chain and check every signature with ``public_key`` (the service's own by default; a
        published key or PEM names its algorithm, `cryptosuite.load_verify_key`)."""
        pk = load_verify_key(public_key) if isinstance(public_key, str) else (public_key or self.keys.public)

        def sig_ok(seq: int, h: str, sig_hex: str) -> bool:
            try:
                return pk.verify(_sig_message(seq, h), bytes.fromhex(sig_hex))
            except ValueError:
                return False

        with self.engine.connect() as conn:
            checkpoints = {r.seq: r for r in conn.execute(select(t.audit_checkpoints))}
            head = conn.execute(select(t.audit_head).where(t.audit_head.c.id == 1)).first()
        prev, expected, count, last_hash = GENESIS, 1, 0, None
        last_good_checkpoint = 0
        horizon = head.seq if head is not None else None  # entries appended after this snapshot: next time
        for e in self.iter_all():
            seq = e["seq"]
            if horizon is not None and seq > horizon:
                break
            if seq != expected:
                return VerifyReport(False, count, last_hash, expected, "entry missing or out of order")
            if e["prev_hash"] != prev:
                return VerifyReport(False, count, last_hash, seq, "prev_hash does not link to the previous entry")
            if entry_hash(self.alg, e) != e["hash"]:
                return VerifyReport(False, count, last_hash, seq, "entry content does not match its hash")
            cp = checkpoints.pop(seq, None)
            if cp is not None:
                if cp.hash != e["hash"] or not sig_ok(seq, cp.hash, cp.signature):
                    return VerifyReport(False, count, last_hash, last_good_checkpoint + 1,
                                        f"signed checkpoint at seq {seq} does not match the chain")
                last_good_checkpoint = seq
            elif seq % self.checkpoint_every == 0:
                return VerifyReport(False, count, last_hash, seq, "signed checkpoint missing")
            prev, last_hash, count, expected = e["hash"], e["hash"], count + 1, expected + 1
        checkpoints = {k: v for k, v in checkpoints.items() if horizon is None or k <= horizon}
        if checkpoints:
            bad = min(checkpoints)
            return VerifyReport(False, count, last_hash, min(bad, expected), "checkpoint beyond the end of the log")
        if head is None:
            if count:
                return VerifyReport(False, count, last_hash, 1, "signed head missing")
            return VerifyReport(True, 0, None, None)
        if not sig_ok(head.seq, head.hash, head.signature):
            return VerifyReport(False, count, last_hash, last_good_checkpoint + 1, "signed head is invalid")
        if head.seq > count:
            return VerifyReport(False, count, last_hash, count + 1, "entries missing at the end of the log")
        if head.hash != last_hash:
            return VerifyReport(False, count, last_hash, last_good_checkpoint + 1,
                                "signed head does not match the chain")
        with self.engine.connect() as conn:  # one statement, one snapshot: the newest entry and the signed head
            newest, signed = conn.execute(select(
                select(func.max(t.audit_entries.c.seq)).scalar_subquery(),
                select(t.audit_head.c.seq).where(t.audit_head.c.id == 1).scalar_subquery())).one()
        if newest is not None and signed is not None and newest > signed:
            return VerifyReport(False, count, last_hash, signed + 1, "entries appended without a signature")
        return VerifyReport(True, count, last_hash, None)


def scope_for(role: str, name: str, owned_datasets: list[str], owned_agreements: list[str]) -> Any:
    """Which entries a principal may read: regulators and the data authority (数据主管部门, which supervises every
    agreement) all; owners those touching their data; admins their own and
    every incident (``job.incident``); others their own. "Their own" is the entries of their requests: the
    service's entries (role ``system``: the job worker, expiry) never count, whatever a principal is named."""
    e = t.audit_entries.c
    if role in (Role.REGULATOR, Role.AUTHORITY):
        return None
    own = and_(e.actor == name, e.role != SYSTEM)
    if role == Role.OWNER:
        conds = [own]
        if owned_datasets:
            conds.append(e.dataset.in_(owned_datasets))
        if owned_agreements:
            conds.append(e.agreement_id.in_(owned_agreements))
        return or_(*conds)
    if role == Role.ADMIN:
        return or_(own, e.action.in_(INCIDENT_ACTIONS))
    if role in ANALYSTS:
        return own
    return and_(false())
