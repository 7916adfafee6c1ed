"""Secure-aggregation rounds: the gateway's stored rounds, each driven by an `mpc.secagg` server, and who may open
and read them (docs/api.md, "Secure aggregation"; the HTTP routes are `gateway.routes.secagg`).

A round is opened by an operator under an active agreement (`policies.Action.SECAGG_AGGREGATE`, checked by
`open_round`) for a fixed list of participants: parties to that agreement who may contribute (its owner and the
``holders`` it names, `policies.agreements.record.secagg_parties`), principals that exist, are enabled and are not
admin or regulator — checked by `check_participants`, with one answer for every name that fails, whatever the
reason. The opener is authorized again when it reads the sum (`authorize_release`). Each round is a row of
``secagg_rounds``: the public `RoundConfig`, the opener, the agreement, an optional public ``task`` (what the
participants are asked to contribute: e.g. the current model of a federated training), the stage and its
deadline, the stage closures, and the protocol server's small state (stage, abort reason, sum, survivors); what
the server received is one ``secagg_round_entries`` row per sender and part (`mpc.secagg.STATE_PARTS`: public
keys, share envelopes, masked inputs, revealed shares) — exactly what the in-memory server held, nothing more.

Who may do what
---------------
- A round cannot be aimed at one holder (`round_policy`, ``POLICY_DENIED``): it has at least `MIN_PARTICIPANTS`
  distinct participants and a threshold of at least `MIN_THRESHOLD`, so every released sum holds at least three
  inputs (closing a stage early below the threshold aborts the round); the opener is never a participant (it
  would otherwise subtract its own input from a sum of two).
- A round is visible (status, roster, survivor list) only to its opener and its participants; anyone else gets
  ``NOT_FOUND_OR_FORBIDDEN``, exactly as for a round that does not exist (round ids are 96-bit random).
- Only participants send messages, and a message's ``sender`` must be the authenticated principal
  (``POLICY_DENIED`` otherwise): a client cannot speak for another, so it cannot make a peer look dropped or
  alive. Each endpoint takes one message kind; out-of-stage, replayed, wrong-round or malformed messages are
  refused by the protocol server (``INVALID_REQUEST``), a bad share envelope by the client (``CIPHERTEXT_INVALID``).
- Only the opener closes a stage early and reads the result — the sum of the survivors' inputs and the survivor
  list, nothing else. Participants never see the sum (`mpc.secagg`'s "clients alone learn nothing").

Stages and deadlines
--------------------
A stage closes as soon as every expected client has sent its message, when its deadline (``stage_timeout_s``
after the stage began) passes, or when the opener closes it. Deadlines are enforced lazily, from the stored
deadline and the registry's clock (wall-clock seconds, so every process agrees), by every request that touches
the round and by every ``open``/``list``, in whichever process serves it: a round nobody touches stays in its
stage, but it is closed (and aborted, if too few sent) before anything else happens to it or before its slot is
counted. Closing with fewer than the threshold aborts the round: the server drops every masked input and share it
held (their rows are deleted), and nothing is released. Once the sum is computed the server keeps only the sum, the
survivor list and the public keys.

Store, transactions and audit
-----------------------------
Every call loads the round from the store with its row locked (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serialises writers), enforces the deadline, applies the message or stage change and
writes it back in the same transaction: a message that leaves its stage open writes one entry row and nothing else
(no blob is rewritten per message; the row lock serialises messages, and whether the message completes the stage is
decided in that same transaction from the senders' names); a stage closure also bumps the row's ``version``,
rewrites the round row and writes its audit entry — ``secagg.stage``, or
``secagg.abort`` with the reason when the round aborts (deadline, below the threshold, its opener) — with
``AuditLog.append_in`` as the transaction's last write: the change and its entry commit together or not at all.
Each closure is audited exactly once, by whichever process makes it. The protocol server is rebuilt from the rows
for each change (`mpc.secagg.SecAggServer.from_state`) with the other senders' names only (and the public keys'
values while keys are advertised, where a repeated key is refused) — the masked inputs and revealed shares are
read once, when the last stage closes and the sum is computed; status and listings read names only. What a closed
stage published (the roster, the envelopes) is read from the store once per process and stage and shared by every
holder's call (`RoundRegistry._stage_server`).

Waiting calls (``?wait=``) park on an `asyncio.Event` (`RoundSignals`), off the request thread pool, until the
commit that closes the round's stage (or opens a round, for listings) wakes them; on PostgreSQL that commit also
sends ``NOTIFY veilbox_secagg`` and a listener thread, alive only while this process has waiters, wakes them for
other processes' closures. On SQLite another process's closure, and on either store a passed deadline, is seen by
a bounded re-check of the store (`STORE_RECHECK_S`, half a second; `PG_RECHECK_S` while listening).

Lifetime and limits
-------------------
Rounds live in the store: **any gateway process serves any call of a round, and a restart loses no round** (the
participants go on with the keys they hold; the deadline of a stage keeps running while no process serves it).
Finished rounds are kept `RETAIN_S` seconds for their result (readable by the opener), then deleted, at most
`MAX_KEPT` of them, oldest first. At most `MAX_OPEN_ROUNDS` rounds are open at once (`MAX_OPEN_PER_OPENER` per
operator; ``QUOTA_EXCEEDED`` beyond), counted in the store whichever process opened them, with at most
`MAX_PARTICIPANTS` participants, `MAX_ROUND_WORDS` words held per round (participants × vector length) and a
public task of at most `MAX_TASK_BYTES`; a federated-training task must fit its plan
(`sandbox.federated.task_problems`, ``INVALID_REQUEST``). Each message body is capped by `max_message_bytes` for
its kind and the round's size, before it is parsed. The registry itself (`RoundRegistry`, one per context in
`gateway.caches`) holds only its clock and limits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, delete, func, or_, select, text

import policies
from catalog.errors import (
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    QUOTA_EXCEEDED,
    DomainError,
)
from catalog.fingerprint import HashAlg
from catalog.fingerprint import digest as fingerprint_digest
from gateway import _tables as t
from gateway import identities
from gateway.audit import AuditEvent, AuditLog
from gateway.errors import mpc_refusal
from gateway.identities import Principal, RoleName
from gateway.services.agreements import note_expiry
from mpc.errors import MpcError
from mpc.secagg import (
    STAGE_PART,
    STATE_PARTS,
    AdvertiseKeys,
    ClientMessage,
    MaskedInput,
    RoundConfig,
    SecAggServer,
    ServerMessage,
    ShareKeys,
    Stage,
    UnmaskRequest,
    UnmaskShares,
    expected_in,
    new_round,
    parse_client_message,
    pending_in,
)
from policies import Action, Actor
from policies.agreements.record import secagg_parties
from sandbox.federated import task_problems as federated_task_problems
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

if TYPE_CHECKING:
    from gateway.context import AppContext

__all__ = [
    "DEFAULT_STAGE_TIMEOUT_S",
    "KINDS",
    "MAX_OPEN_PER_OPENER",
    "MAX_OPEN_ROUNDS",
    "MAX_PARTICIPANTS",
    "MAX_ROUND_WORDS",
    "MAX_TASK_BYTES",
    "MIN_PARTICIPANTS",
    "MIN_THRESHOLD",
    "NOT_ALLOWED",
    "PARTICIPANT_ROLES",
    "RETAIN_S",
    "Published",
    "Released",
    "Round",
    "RoundHeader",
    "RoundRegistry",
    "authorize_release",
    "check_participants",
    "max_message_bytes",
    "open_round",
    "round_policy",
    "rounds_for",
    "sum_digest",
]

MAX_OPEN_ROUNDS = 16
MAX_OPEN_PER_OPENER = 4
MAX_PARTICIPANTS = 1000
MIN_PARTICIPANTS = 3  # a sum of fewer inputs would single out a holder
MIN_THRESHOLD = 3  # ... and so would a round that may release the sum of fewer survivors
MAX_ROUND_WORDS = 1 << 25  # participants × vector length: 128 MiB of masked inputs held at most
MAX_TASK_BYTES = 256 << 10
DEFAULT_STAGE_TIMEOUT_S = 300.0
MIN_STAGE_TIMEOUT_S, MAX_STAGE_TIMEOUT_S = 1.0, 3600.0
RETAIN_S = 3600.0
MAX_KEPT = 256  # finished rounds beyond this are forgotten oldest first
MAX_PUBLISHED_CACHED = 8  # closed stages' published parts kept per process (`RoundRegistry._stage_server`)
MAX_HEADERS_CACHED = 256  # rounds whose immutable part (`RoundHeader`) a process keeps
MAX_NAME_CHARS = 64  # a principal's name (the store's column)
_OPEN_LOCK = 0x5EC_A66  # PostgreSQL advisory lock: one round opening at a time counts the open rounds

#: The message kind each POST endpoint takes.
KINDS: Mapping[str, type[ClientMessage]] = {
    "keys": AdvertiseKeys,
    "shares": ShareKeys,
    "masked": MaskedInput,
    "unmask": UnmaskShares,
}
_FINAL = (Stage.DONE, Stage.ABORTED)


def round_policy(opener: str, participants: list[str] | tuple[str, ...], threshold: int) -> None:
    """``POLICY_DENIED`` unless the round has at least `MIN_PARTICIPANTS` distinct participants, a threshold of at
    least `MIN_THRESHOLD` and the opener is not among the participants (none of this depends on who exists)."""
    reasons = []
    if len(set(participants)) < MIN_PARTICIPANTS:
        reasons.append({"reason": "secagg.too_few_participants", "minimum": MIN_PARTICIPANTS})
    if threshold < MIN_THRESHOLD:
        reasons.append({"reason": "secagg.threshold_too_low", "minimum": MIN_THRESHOLD})
    if opener in participants:
        reasons.append({"reason": "secagg.opener_is_participant"})
    if reasons:
        raise DomainError(POLICY_DENIED, "a round needs at least three participants other than its opener and a "
                                         "threshold of at least three", reasons)


def _refusal(exc: MpcError) -> DomainError:
    """An `MpcError` as the gateway's `DomainError` (its public code by type, its caller-safe message)."""
    return mpc_refusal(exc)


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def max_message_bytes(config: RoundConfig, endpoint: str) -> int:
    """The largest body a well-formed message of ``endpoint``'s kind can have in this round (JSON, base64)."""
    n = len(config.participants)
    name = 6 * max(len(p) for p in config.participants) + 8  # a JSON-escaped name, quotes, colon, comma
    base = 1024 + 6 * len(config.round_id)
    if endpoint == "keys":
        return base + 2 * _b64_len(32)
    if endpoint == "shares":
        return base + n * (name + _b64_len(94) + 4)
    if endpoint == "masked":
        return base + _b64_len(4 * config.vector_length)
    if endpoint == "unmask":
        return base + n * (name + _b64_len(33) + 4)
    raise KeyError(endpoint)


def sum_digest(total: NDArray[np.uint32], alg: HashAlg = "sha256") -> str:
    """The home suite's digest (``sha256:`` intl, ``sm3:`` sm) of the sum as little-endian uint32 words: the
    round's output digest in the audit log."""
    return fingerprint_digest(total.astype("<u4", copy=False).tobytes(), alg)


@dataclass(eq=False)
class Round:
    """One round as stored: its public config, who opened it under which agreement, its stage and deadline, the
    protocol server's small state (``core``: stage, abort reason, sum, survivors) and the senders it holds an
    entry from per part (``held``). ``server`` is the protocol server itself, loaded only to change the round."""

    config: RoundConfig
    opener: str
    agreement_id: str
    task: dict[str, Any] | None
    stage_timeout: float
    opened_at: float
    deadline: float
    finished_at: float | None
    history: list[dict[str, Any]]
    core: dict[str, Any]
    held: dict[str, tuple[str, ...]]
    version: int = 0
    server: SecAggServer | None = None

    @property
    def id(self) -> str:
        return self.config.round_id

    @property
    def stage(self) -> Stage:
        return Stage(self.core["stage"])

    @property
    def final(self) -> bool:
        return self.stage in _FINAL

    @property
    def survivors(self) -> tuple[str, ...]:
        if self.stage is Stage.UNMASK:
            return tuple(sorted(self.held.get("masked", ()), key=self.config.point.__getitem__))
        if self.stage is Stage.DONE:
            return tuple(self.core.get("survivors") or ())
        return ()

    def pending(self) -> frozenset[str]:
        """Who the current stage still waits for (from the senders' names alone)."""
        return pending_in(self.config, self.stage, self.held) if not self.final else frozenset()

    def expected(self) -> frozenset[str]:
        return expected_in(self.config, self.stage, self.held) if not self.final else frozenset()

    def visible_to(self, who: str) -> bool:
        return who == self.opener or who in self.config.point

    def abort_reason(self) -> str | None:
        if self.stage is not Stage.ABORTED:
            return None
        return str(self.core.get("abort_reason") or "round aborted")


@dataclass(frozen=True)
class RoundHeader:
    """What never changes in a round once opened: its public config, its opener and its agreement."""

    config: RoundConfig
    opener: str
    agreement_id: str

    @property
    def id(self) -> str:
        return self.config.round_id


@dataclass(frozen=True)
class Published:
    """What the server publishes between two stages (roster, forwarded shares, survivor list), if it is ready."""

    round_id: str
    stage: Stage
    message: ServerMessage | None
    abort_reason: str | None

    @property
    def ready(self) -> bool:
        return self.message is not None

    @property
    def settled(self) -> bool:
        """Ready, or never going to be (the round is over)."""
        return self.message is not None or self.stage in _FINAL

    def to_json(self) -> dict[str, Any]:
        return {"round_id": self.round_id, "stage": self.stage.value, "ready": self.ready,
                "message": self.message.to_json() if self.message is not None else None,
                "abort_reason": self.abort_reason}


@dataclass(frozen=True)
class Released:
    """A finished round's output: the sum of the survivors' inputs (mod 2^m) and who the survivors were."""

    round_id: str
    total: NDArray[np.uint32]
    survivors: tuple[str, ...]
    modulus_bits: int
    hash_alg: HashAlg = "sha256"  # the home suite's hash (`RoundRegistry.hash_alg`)

    @property
    def digest(self) -> str:
        return sum_digest(self.total, self.hash_alg)

    def to_json(self) -> dict[str, Any]:
        return {"round_id": self.round_id, "stage": Stage.DONE.value, "ready": True,
                "sum": base64.b64encode(self.total.astype("<u4", copy=False).tobytes()).decode("ascii"),
                "encoding": "uint32-le-base64", "vector_length": int(self.total.size),
                "modulus_bits": self.modulus_bits, "survivors": list(self.survivors), "output_digest": self.digest}


# --- the store ---------------------------------------------------------------------------------------------------

_R, _E, _M = t.secagg_rounds.c, t.secagg_round_entries.c, t.secagg_round_members.c


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _round_of(row: Any, held: Mapping[str, list[str]]) -> Round:
    try:
        config = RoundConfig.model_validate(json.loads(row.config))
    except (ValidationError, ValueError):  # pragma: no cover - only this module writes the column
        raise DomainError(INVALID_REQUEST, "the stored round cannot be read") from None
    return Round(config=config, opener=row.opener, agreement_id=row.agreement_id,
                 task=json.loads(row.task) if row.task is not None else None, stage_timeout=float(row.stage_timeout),
                 opened_at=float(row.opened_at), deadline=float(row.deadline),
                 finished_at=float(row.finished_at) if row.finished_at is not None else None,
                 history=json.loads(row.history), core=json.loads(row.server),
                 held={part: tuple(held.get(part, ())) for part in STATE_PARTS}, version=int(row.version))


def _held_names(conn: Connection, round_ids: list[str]) -> dict[str, dict[str, list[str]]]:
    """The senders each round holds an entry from, per part, in arrival order (names only, no values)."""
    out: dict[str, dict[str, list[str]]] = {rid: {} for rid in round_ids}
    for chunk in range(0, len(round_ids), 500):
        ids = round_ids[chunk:chunk + 500]
        q = select(_E.round_id, _E.part, _E.sender).where(_E.round_id.in_(ids)).order_by(_E.round_id, _E.part, _E.seq)
        for rid, part, sender in conn.execute(q):
            out[rid].setdefault(part, []).append(sender)
    return out


def _load(conn: Connection, round_id: str, *, lock: bool) -> Round | None:
    q = select(t.secagg_rounds).where(_R.id == round_id)
    row = conn.execute(q.with_for_update() if lock else q).first()
    if row is None:
        return None
    return _round_of(row, _held_names(conn, [round_id])[round_id])


def _load_server(conn: Connection, rnd: Round, values: tuple[str, ...] = STATE_PARTS) -> SecAggServer:
    """The round's protocol server rebuilt from its row and its entries: the values of the parts in ``values``, the
    senders' names alone for the others (such a server accepts messages and closes every stage but the last; what
    needs a missing value refuses). A message thus reads the public keys, never every masked input held."""
    parts: dict[str, dict[str, Any]] = {part: dict.fromkeys(rnd.held.get(part, ())) for part in STATE_PARTS}
    q = select(_E.part, _E.sender, _E.value).where(_E.round_id == rnd.id).order_by(_E.part, _E.seq)
    if values != STATE_PARTS:
        q = q.where(_E.part.in_(values))
    for part, sender, value in conn.execute(q):
        parts.setdefault(part, {})[sender] = json.loads(value)
    try:
        return SecAggServer.from_state(rnd.config, {**rnd.core, "parts": parts})
    except MpcError as exc:  # pragma: no cover - only this module writes the rows
        raise _refusal(exc) from None


def _notify_in(conn: Connection, round_id: str) -> None:
    """PostgreSQL: tell the other gateway processes' waiters, when this transaction commits, that the round
    changed (`RoundSignals`); SQLite has no such channel (they re-read the store, `STORE_RECHECK_S`)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, :round_id)"), {"channel": NOTIFY_CHANNEL, "round_id": round_id})


def _delete_rounds(conn: Connection, ids: list[str]) -> None:
    for chunk in range(0, len(ids), 500):
        part = ids[chunk:chunk + 500]
        conn.execute(delete(t.secagg_round_entries).where(_E.round_id.in_(part)))
        conn.execute(delete(t.secagg_round_members).where(_M.round_id.in_(part)))
        conn.execute(delete(t.secagg_rounds).where(_R.id.in_(part)))


@dataclass(eq=False)
class _Change:
    """One transaction on one locked round: what it changed, the stage closures and their audit entries."""

    conn: Connection
    rnd: Round
    who: str
    stored_held: dict[str, tuple[str, ...]]
    whole: bool = False  # the loaded server has every value (not only the public keys)
    new_entries: list[tuple[str, str]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)
    stage_changed: bool = False

    @property
    def dirty(self) -> bool:
        return self.stage_changed or bool(self.new_entries)


class RoundRegistry:
    """A context's handle on the stored rounds: the clock deadlines are read with, and the limits (see the module
    docstring). It keeps no round: every call reads the round from the store and writes its change back."""

    def __init__(self, clock: Callable[[], float] = time.time, *, max_open: int = MAX_OPEN_ROUNDS,
                 max_open_per_opener: int = MAX_OPEN_PER_OPENER, retain_s: float = RETAIN_S,
                 engine: Engine | None = None, audit: AuditLog | None = None) -> None:
        self.clock = clock
        self.max_open = max_open
        self.max_open_per_opener = max_open_per_opener
        self.retain_s = retain_s
        self.engine = engine
        self.audit = audit
        self.hash_alg: HashAlg = "sha256"  # the home suite's hash for a released sum's digest (`bind`)
        #: Wakes the calls waiting in this process when a round changes stage (or opens).
        self.signals = RoundSignals()
        #: What a stage published, by (round, part, closures so far): immutable once its stage has closed, so every
        #: holder's long poll reads it from the store once per process, not once per holder.
        self._published: dict[tuple[str, str, int], SecAggServer] = {}
        self._headers: dict[str, RoundHeader] = {}  # rounds' immutable parts (`header`)
        self._published_lock = threading.Lock()

    def bind(self, engine: Engine, audit: AuditLog, hash_alg: HashAlg = "sha256") -> RoundRegistry:
        """Attach the store and the audit log the rounds live in (once per context), and the home suite's hash."""
        if self.engine is None or self.audit is None:
            self.engine, self.audit, self.hash_alg = engine, audit, hash_alg
            if engine.dialect.name == "postgresql":  # listen for the closures other gateway processes commit
                self.signals.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return self

    def _store(self) -> tuple[Engine, AuditLog]:
        if self.engine is None or self.audit is None:
            raise RuntimeError("the round registry is not bound to a store (use rounds_for(ctx))")
        return self.engine, self.audit

    # -- the table ----------------------------------------------------------------------------------------

    def open(self, opener: str, agreement_id: str, participants: list[str], threshold: int, vector_length: int,
             modulus_bits: int = 32, *, stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S,
             task: dict[str, Any] | None = None, max_body_bytes: int | None = None) -> Round:
        """A new round in stage ``advertise_keys``; ``POLICY_DENIED`` against `round_policy`, ``INVALID_REQUEST``
        for a bad shape, ``QUOTA_EXCEEDED`` if too many rounds are open (counted in the store)."""
        engine, _ = self._store()
        round_policy(opener, participants, threshold)
        problems = self._shape_problems(participants, vector_length, stage_timeout_s, task)
        if not problems and task is not None:  # a federated-training task must fit its mechanism's plan
            problems = federated_task_problems(task, threshold, vector_length, modulus_bits)
        if problems:
            raise DomainError(INVALID_REQUEST, "the round cannot be opened as asked", problems)
        try:
            config = new_round(participants, threshold, vector_length, modulus_bits)
        except ValidationError as exc:
            details = [{"field": ".".join(str(p) for p in e["loc"]) or "round", "problem": e["msg"]}
                       for e in exc.errors()]
            raise DomainError(INVALID_REQUEST, "the round cannot be opened as asked", details) from None
        if max_body_bytes is not None and max_message_bytes(config, "masked") > max_body_bytes:
            raise DomainError(INVALID_REQUEST, "vector_length is too large for the gateway's body limit",
                              [{"field": "vector_length", "max_body_bytes": max_body_bytes}])
        self._sweep()
        now = self.clock()
        rnd = Round(config=config, opener=opener, agreement_id=agreement_id, task=task,
                    stage_timeout=float(stage_timeout_s), opened_at=now, deadline=now + float(stage_timeout_s),
                    finished_at=None, history=[], core=SecAggServer(config).to_state(parts=False),
                    held={part: () for part in STATE_PARTS})
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # one opener at a time counts and inserts (SQLite: BEGIN IMMEDIATE)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OPEN_LOCK})
            running = _R.stage.not_in([s.value for s in _FINAL])
            total = conn.execute(select(func.count()).select_from(t.secagg_rounds).where(running)).scalar_one()
            if total >= self.max_open:
                raise DomainError(QUOTA_EXCEEDED, "too many secure-aggregation rounds are open; try again later",
                                  [{"reason": "secagg.open_rounds", "limit": self.max_open}])
            mine = conn.execute(select(func.count()).select_from(t.secagg_rounds)
                                .where(running, _R.opener == opener)).scalar_one()
            if mine >= self.max_open_per_opener:
                raise DomainError(QUOTA_EXCEEDED, "you have too many open secure-aggregation rounds",
                                  [{"reason": "secagg.open_rounds_per_operator", "limit": self.max_open_per_opener}])
            conn.execute(t.secagg_rounds.insert().values(
                id=rnd.id, opener=opener, agreement_id=agreement_id, config=_dumps(config.to_json()),
                task=json.dumps(task, separators=(",", ":")) if task is not None else None, stage=rnd.stage.value,
                stage_timeout=rnd.stage_timeout, opened_at=now, deadline=rnd.deadline, finished_at=None,
                history="[]", server=_dumps(rnd.core), version=0))
            conn.execute(t.secagg_round_members.insert(), [{"round_id": rnd.id, "name": n}
                                                           for n in config.participants])
            _notify_in(conn, rnd.id)
        self.signals.notify(rnd.id)
        return rnd

    def header(self, round_id: str, who: str) -> RoundHeader:
        """The round's immutable part (config, opener, agreement), if ``who`` opened it or takes part in it;
        ``NOT_FOUND_OR_FORBIDDEN`` otherwise. Read from the store once per process (`get`), then from memory: a
        message's size limit and its audit entry's agreement need no transaction of their own."""
        with self._published_lock:
            head = self._headers.get(round_id)
        if head is None:
            rnd = self.get(round_id, who)
            head = RoundHeader(rnd.config, rnd.opener, rnd.agreement_id)
            with self._published_lock:
                self._headers[round_id] = head
                while len(self._headers) > MAX_HEADERS_CACHED:
                    del self._headers[next(iter(self._headers))]
        if not (who == head.opener or who in head.config.point):
            raise DomainError(NOT_FOUND_OR_FORBIDDEN, "round not found")
        return head

    def get(self, round_id: str, who: str) -> Round:
        """The round (its deadline enforced), if ``who`` opened it or takes part in it; ``NOT_FOUND_OR_FORBIDDEN``
        otherwise."""
        with self._change(round_id, who, writes=False) as ch:
            return ch.rnd

    def visible(self, who: str, *, waiting_for: bool = False) -> list[Round]:
        """The rounds ``who`` opened or takes part in, oldest first (deadlines enforced first); with
        ``waiting_for``, only those whose current stage still waits for a message from ``who``."""
        engine, _ = self._store()
        self._sweep()
        with engine.connect() as conn:
            member = select(_M.round_id).where(_M.name == who)
            rows = list(conn.execute(select(t.secagg_rounds).where(or_(_R.opener == who, _R.id.in_(member)))
                                     .order_by(_R.opened_at, _R.id)))
            held = _held_names(conn, [r.id for r in rows])
        rounds = [_round_of(r, held[r.id]) for r in rows]
        if waiting_for:
            rounds = [r for r in rounds if who in r.pending()]
        return rounds

    # -- one round ----------------------------------------------------------------------------------------

    def submit(self, round_id: str, who: str, endpoint: str, data: Any) -> tuple[list[dict[str, Any]], Round]:
        """Accept one client message on ``endpoint``: its entry is stored in the same transaction as the stage
        closure it may cause and that closure's audit entry. Returns the closures and the round as it now is."""
        if not isinstance(data, Mapping):
            raise DomainError(INVALID_REQUEST, "a message must be a JSON object")
        with self._change(round_id, who) as ch:
            rnd = ch.rnd
            if who not in rnd.config.point:
                raise DomainError(POLICY_DENIED, "only the round's participants send messages",
                                  [{"reason": "secagg.not_participant"}])
            try:
                message = parse_client_message(data)
            except MpcError as exc:
                raise _refusal(exc) from None
            kind = KINDS[endpoint]
            if not isinstance(message, kind):
                raise DomainError(INVALID_REQUEST,
                                  f"this endpoint takes {kind.model_fields['kind'].default} messages")
            if message.sender != who:
                raise DomainError(POLICY_DENIED, "a message's sender must be the authenticated principal",
                                  [{"reason": "secagg.sender_mismatch"}])
            # the last message of the last stage computes the sum: only then is every value read
            server = self._server(ch, whole=rnd.stage is Stage.UNMASK and rnd.pending() <= {who})
            stage = server.stage
            try:
                server.receive(message)
            except MpcError as exc:
                raise _refusal(exc) from None
            ch.new_entries.append((STAGE_PART[stage], who))
            rnd.held = server.held()
            if not server.pending():
                self._close(ch, "all_arrived")
            return ch.closed, rnd

    def publish(self, round_id: str, who: str, what: str) -> Published:
        """The roster (``keys``), ``who``'s forwarded shares (``shares``) or the survivor list (``survivors``)."""
        with self._change(round_id, who, writes=False) as ch:
            rnd = ch.rnd
            if what == "shares" and who not in rnd.config.point:
                raise DomainError(POLICY_DENIED, "shares are forwarded only to participants",
                                  [{"reason": "secagg.not_participant"}])
            stage = rnd.stage
            message: ServerMessage | None = None
            try:
                if what == "keys" and stage not in (Stage.ADVERTISE_KEYS, Stage.ABORTED):
                    message = self._stage_server(ch, "keys").key_roster()
                elif what == "shares" and stage is Stage.MASKED_INPUT:
                    message = self._stage_server(ch, "envelopes").forwarded_shares(who)
                elif what == "survivors" and stage is Stage.UNMASK:
                    message = UnmaskRequest(round_id=rnd.id, survivors=rnd.survivors)
            except MpcError as exc:
                raise _refusal(exc) from None
            return Published(rnd.id, stage, message, rnd.abort_reason())

    def close(self, round_id: str, who: str) -> tuple[list[dict[str, Any]], Round]:
        """The opener ends the current stage now (aborting the round if fewer than the threshold sent)."""
        with self._change(round_id, who) as ch:
            self._require_opener(ch.rnd, who)
            if ch.rnd.final:
                raise DomainError(INVALID_REQUEST, f"the round is over (stage {ch.rnd.stage.value})")
            self._close(ch, "operator")
            return ch.closed, ch.rnd

    def result(self, round_id: str, who: str) -> Released | Published:
        """For the opener: the released sum once the round is done, the stage while it runs; ``INVALID_REQUEST``
        (nothing released) if it aborted."""
        with self._change(round_id, who, writes=False) as ch:
            rnd = ch.rnd
            self._require_opener(rnd, who)
            if rnd.stage is Stage.ABORTED:
                raise DomainError(INVALID_REQUEST, f"the round aborted ({rnd.abort_reason()}); nothing is released",
                                  [{"reason": "secagg.aborted"}])
            if rnd.stage is not Stage.DONE or not rnd.core.get("result"):
                return Published(rnd.id, rnd.stage, None, None)
            total = np.frombuffer(base64.b64decode(rnd.core["result"]), dtype=np.dtype("<u4")).astype(np.uint32)
            return Released(rnd.id, total, rnd.survivors, rnd.config.modulus_bits, self.hash_alg)

    def status(self, rnd: Round, who: str) -> dict[str, Any]:
        """The round's public state; the opener also sees who the current stage still waits for."""
        pending = rnd.pending()
        out: dict[str, Any] = {
            "id": rnd.id, "agreement_id": rnd.agreement_id, "opened_by": rnd.opener,
            "config": rnd.config.to_json(), "stage": rnd.stage.value, "stage_timeout_s": rnd.stage_timeout,
            "deadline_in_s": None if rnd.final else max(0.0, rnd.deadline - self.clock()),
            "waiting_for": len(pending), "survivors": list(rnd.survivors), "history": list(rnd.history),
            "abort_reason": rnd.abort_reason(), "task": rnd.task,
        }
        if who == rnd.opener:
            out["pending"] = sorted(pending)
        return out

    # -- internals ----------------------------------------------------------------------------------------

    @staticmethod
    def _shape_problems(participants: list[str], vector_length: int, stage_timeout_s: float,
                        task: dict[str, Any] | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if len(participants) > MAX_PARTICIPANTS:
            out.append({"field": "participants", "problem": f"at most {MAX_PARTICIPANTS} participants"})
        if any(len(p) > MAX_NAME_CHARS for p in participants):
            out.append({"field": "participants", "problem": f"names of at most {MAX_NAME_CHARS} characters"})
        if vector_length >= 1 and len(participants) * vector_length > MAX_ROUND_WORDS:
            out.append({"field": "vector_length",
                        "problem": f"participants × vector_length must not exceed {MAX_ROUND_WORDS}"})
        if not MIN_STAGE_TIMEOUT_S <= stage_timeout_s <= MAX_STAGE_TIMEOUT_S:
            out.append({"field": "stage_timeout_s",
                        "problem": f"must lie in [{MIN_STAGE_TIMEOUT_S:g}, {MAX_STAGE_TIMEOUT_S:g}] seconds"})
        if task is not None and len(json.dumps(task, separators=(",", ":"))) > MAX_TASK_BYTES:
            out.append({"field": "task", "problem": f"at most {MAX_TASK_BYTES} bytes of JSON"})
        return out

    @staticmethod
    def _require_opener(rnd: Round, who: str) -> None:
        if who != rnd.opener:
            raise DomainError(POLICY_DENIED, "only the operator who opened the round may do this",
                              [{"reason": "secagg.not_opener"}])

    @contextmanager
    def _change(self, round_id: str, who: str | None, *, writes: bool = True) -> Iterator[_Change]:
        """Load the round with its row locked (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
        serialises writers), enforce its deadline, let the caller act, then write the change back with its audit
        entries — one transaction. ``NOT_FOUND_OR_FORBIDDEN`` unless ``who`` (if given) may see the round. A
        refusal after a deadline closure still commits the closure (it happened whatever the caller asked).
        A caller that only reads (``writes=False``) takes the row lock only if the deadline must be enforced."""
        engine, _ = self._store()
        refusal: DomainError | None = None
        with engine.begin() as conn:
            rnd = _load(conn, round_id, lock=writes)
            if rnd is not None and not writes and not rnd.final and self.clock() >= rnd.deadline:
                rnd = _load(conn, round_id, lock=True)  # read again under the lock: another may have closed it
            if rnd is None or (who is not None and not rnd.visible_to(who)):
                raise DomainError(NOT_FOUND_OR_FORBIDDEN, "round not found")
            ch = _Change(conn, rnd, who or SYSTEM, dict(rnd.held))
            self._tick(ch)
            try:
                yield ch
            except DomainError as exc:
                if not ch.stage_changed:
                    raise
                ch.new_entries.clear()
                refusal = exc
            self._flush(ch)
        if ch.stage_changed:
            self.signals.notify(round_id)
        if refusal is not None:
            raise refusal

    def _stage_server(self, ch: _Change, part: str) -> SecAggServer:
        """A server holding ``part``'s values as a closed stage published them: read from the store once per
        process and stage (``part`` does not change until the next closure), then shared by every reader."""
        rnd = ch.rnd
        if ch.whole and rnd.server is not None:
            return rnd.server
        key = (rnd.id, part, len(rnd.history))
        with self._published_lock:
            server = self._published.get(key)
        if server is None:
            server = _load_server(ch.conn, rnd, (part,))
            with self._published_lock:
                self._published[key] = server
                while len(self._published) > MAX_PUBLISHED_CACHED:
                    del self._published[next(iter(self._published))]
        return server

    def _server(self, ch: _Change, *, whole: bool = False) -> SecAggServer:
        """The round's protocol server, loaded once per change: unless ``whole``, the senders' names only (and the
        public keys' values in ``advertise_keys``, where a repeated key is refused).
        A server this change already changed is never reloaded: after a deadline closure into ``unmask`` no share
        was revealed yet, so closing that stage aborts without reading a value (and `mpc.secagg` refuses, never
        guesses, should a missing value be needed)."""
        if ch.rnd.server is None or (whole and not ch.whole and not ch.dirty):
            values = STATE_PARTS if whole else ("keys",) if ch.rnd.stage is Stage.ADVERTISE_KEYS else ()
            ch.rnd.server = _load_server(ch.conn, ch.rnd, values)
            ch.whole = whole
        return ch.rnd.server

    def _flush(self, ch: _Change) -> None:
        """Write ``ch``'s change: a message that leaves its stage open is one entry row, nothing else (the round's
        row lock, taken when it was loaded, serialises the messages); a stage closure also drops the entries the
        server dropped and rewrites the round row (version checked), then writes its audit entries as the
        transaction's last writes."""
        if not ch.dirty:
            return
        _, audit = self._store()
        conn, rnd = ch.conn, ch.rnd
        server = rnd.server
        assert server is not None  # every change loads the server
        held = server.held()
        for part, sender in ch.new_entries:
            if sender in held[part]:  # not if the stage closure it caused dropped it again (the sum is out)
                conn.execute(t.secagg_round_entries.insert().values(
                    round_id=rnd.id, part=part, sender=sender, seq=len(ch.stored_held.get(part, ())),
                    value=_dumps(server.entry(part, sender))))
        if not ch.stage_changed:
            return
        values: dict[str, Any] = {"version": rnd.version + 1}
        if ch.stage_changed:
            for part in STATE_PARTS:
                gone = set(ch.stored_held.get(part, ())) - set(held[part])
                if gone:  # the server dropped them (the round aborted, or its sum is computed)
                    conn.execute(delete(t.secagg_round_entries).where(
                        _E.round_id == rnd.id, _E.part == part, _E.sender.in_(sorted(gone))))
            values.update(stage=rnd.stage.value, deadline=rnd.deadline, finished_at=rnd.finished_at,
                          history=_dumps(rnd.history), server=_dumps(rnd.core))
        done = conn.execute(t.secagg_rounds.update().where(_R.id == rnd.id, _R.version == rnd.version)
                            .values(**values))
        if done.rowcount != 1:  # pragma: no cover - the row is locked for the whole transaction
            raise DomainError(INVALID_REQUEST, "the round changed meanwhile; try again")
        rnd.version += 1
        _notify_in(conn, rnd.id)
        for ev in ch.events:
            audit.append_in(conn, ev)

    def _close(self, ch: _Change, by: str) -> None:
        """Close ``ch``'s current stage and record it (its audit entry is written with the change)."""
        rnd = ch.rnd
        server = self._server(ch, whole=rnd.stage is Stage.UNMASK)  # only the sum needs the values
        stage = server.stage
        received = len(server.expected() - server.pending())
        server.close_stage()
        now = self.clock()
        entry = {"stage": stage.value, "by": by, "received": received, "next": server.stage.value}
        rnd.history.append(entry)
        ch.closed.append(entry)
        rnd.core = server.to_state(parts=False)
        rnd.held = server.held()
        if rnd.final:
            rnd.finished_at = now
        else:
            rnd.deadline = now + rnd.stage_timeout
        ch.stage_changed = True
        details: dict[str, Any] = {"round_id": rnd.id, **entry, "during_request_of": ch.who}
        action = AuditAction.SECAGG_STAGE
        if server.stage is Stage.ABORTED:
            action = AuditAction.SECAGG_ABORT
            details["reason"] = rnd.abort_reason()
        elif server.stage is Stage.DONE:
            details["survivors"] = len(rnd.survivors)
        ch.events.append(AuditEvent(actor="system", role=SYSTEM, action=action, agreement_id=rnd.agreement_id,
                                    details=details))

    def _tick(self, ch: _Change) -> None:
        """Close the current stage if its stored deadline has passed."""
        if not ch.rnd.final and self.clock() >= ch.rnd.deadline:
            self._close(ch, "deadline")

    def _sweep(self) -> None:
        """Enforce every open round's deadline (each in its own transaction, with its audit entry) and forget
        finished rounds older than `retain_s` or beyond the `MAX_KEPT` newest."""
        engine, _ = self._store()
        now = self.clock()
        with engine.connect() as conn:
            late = list(conn.execute(select(_R.id).where(_R.stage.not_in([s.value for s in _FINAL]),
                                                         _R.deadline <= now)).scalars())
        for round_id in late:
            try:
                with self._change(round_id, None):
                    pass
            except DomainError:  # forgotten meanwhile by another process
                continue
        with engine.begin() as conn:
            finished = _R.finished_at.is_not(None)
            old = list(conn.execute(select(_R.id).where(finished, _R.finished_at < now - self.retain_s)).scalars())
            beyond = list(conn.execute(select(_R.id).where(finished).order_by(_R.finished_at.desc(), _R.id)
                                       .offset(MAX_KEPT)).scalars())
            gone = sorted(set(old) | set(beyond))
            if gone:
                _delete_rounds(conn, gone)


def rounds_for(ctx: Any) -> RoundRegistry:
    """The round registry of the service context ``ctx`` (`gateway.caches.Caches.secagg_rounds`: its clock and
    limits, one per context), bound to the context's store and audit log."""
    reg: RoundRegistry = ctx.caches.secagg_rounds
    return reg.bind(ctx.engine, ctx.audit, ctx.settings.hash_alg)


# --- waking waiting calls ------------------------------------------------------------------------------------------

NOTIFY_CHANNEL = "veilbox_secagg"
#: A waiting call re-reads the store at least this often: on SQLite the only way to see a stage another gateway
#: process closed (or a deadline passing); on PostgreSQL a safety net behind LISTEN/NOTIFY.
STORE_RECHECK_S = 0.5
PG_RECHECK_S = 5.0


class RoundSignals:
    """Wake-ups for calls waiting on a round (``?wait=``): each waiter parks on an `asyncio.Event` registered under
    the round's id (or under ``None``: any round, the holders' listing) and is woken, on its own event loop, when
    this process commits a stage closure of that round or opens a round (`notify`, from any thread). On PostgreSQL
    the same commit also sends ``NOTIFY veilbox_secagg, '<round id>'`` (transactional: delivered on commit), and a
    listener thread — running only while someone waits in this process — wakes the waiters of rounds other gateway
    processes changed. No waiter sleeps in a loop or holds a thread of the request pool while it waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str | None, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._listener: threading.Thread | None = None
        self.url: str | None = None  # a PostgreSQL store's libpq URL: listen for other processes' closures
        self.listening_ready = threading.Event()  # set while the listener's LISTEN is in force

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.is_alive()

    @contextmanager
    def watch(self, key: str | None) -> Iterator[asyncio.Event]:
        """An event set whenever round ``key`` (``None``: any round) changes stage while the block runs (called on
        the event loop the waiter awaits on)."""
        item = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(key, set()).add(item)
            if self.url is not None and not self.listening:
                self._listener = threading.Thread(target=self._listen, args=(self.url,), daemon=True,
                                                  name="secagg-listen")
                self._listener.start()
        try:
            yield item[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(item)
                    if not waiters:
                        del self._waiters[key]

    def notify(self, round_id: str) -> None:
        """Wake the waiters of ``round_id`` and of any round (thread-safe; a closed loop is skipped)."""
        with self._lock:
            items = [*self._waiters.get(round_id, ()), *self._waiters.get(None, ())]
        for loop, event in items:
            with suppress(RuntimeError):  # the waiter's loop has closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def _listen(self, url: str) -> None:
        """PostgreSQL: ``LISTEN`` while this process has waiters, waking them for other processes' commits."""
        import psycopg

        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self.listening_ready.set()
                while True:
                    for note in conn.notifies(timeout=1.0):
                        self.notify(note.payload)
                    with self._lock:
                        if not self._waiters:
                            self.listening_ready.clear()
                            self._listener = None
                            return
        except Exception:  # the store went away: the waiters fall back to their periodic re-check
            with self._lock:
                self.listening_ready.clear()
                self._listener = None

    def recheck_s(self) -> float:
        """How long a waiter may park before it re-reads the store anyway."""
        return PG_RECHECK_S if self.listening_ready.is_set() else STORE_RECHECK_S


# --- who may open a round and read its sum (the routes' and the CLI's path) --------------------------------------

PARTICIPANT_ROLES = frozenset({RoleName.OWNER, RoleName.OPERATOR, RoleName.BANK})
NOT_ALLOWED = "secagg.participant_not_allowed"


def check_participants(ctx: AppContext, agreement_id: str, names: list[str]) -> None:
    """``POLICY_DENIED`` naming every participant that is not a party of the agreement who may contribute, or not
    a usable principal of a participating role — one answer per name, whatever the reason."""
    agreement = policies.load_agreement(ctx.engine, agreement_id)
    parties = secagg_parties(agreement) if agreement is not None else frozenset()
    bad = []
    for name in dict.fromkeys(names):
        p = identities.usable_by_name(ctx.engine, name)  # looked up for every name: the same work either way
        if name not in parties or p is None or p.role not in PARTICIPANT_ROLES:
            bad.append({"participant": name[:64], "reason": NOT_ALLOWED})
    if bad:
        raise DomainError(POLICY_DENIED, "every participant must be a party to the agreement who may contribute "
                                         "(its owner or one of its holders)", bad)


def open_round(ctx: AppContext, opener: Principal, agreement_id: str, participants: list[str], threshold: int,
               vector_length: int, modulus_bits: int, stage_timeout_s: float, task: dict[str, Any] | None,
               ev: AuditEvent) -> Round:
    """Open a round: the agreement's expiry noted, the opener authorized (`policies.Action.SECAGG_AGGREGATE`,
    metered), the round's shape (`round_policy`) and every participant checked — a refusal's reasons and the
    refused names (the opener's own request) go to the audit entry ``ev``."""
    note_expiry(ctx, agreement_id)
    policies.authorize(ctx.engine, Actor(opener.name, opener.role.value), Action.SECAGG_AGGREGATE, agreement_id)
    try:
        round_policy(opener.name, participants, threshold)
        check_participants(ctx, agreement_id, participants)
    except DomainError as e:  # the audit entry says why (the names are the opener's own request)
        ev.details["reasons"] = sorted({str(d.get("reason")) for d in e.details})
        ev.details["refused"] = [d["participant"] for d in e.details if "participant" in d][:100]
        raise
    return rounds_for(ctx).open(
        opener.name, agreement_id, participants, threshold, vector_length, modulus_bits,
        stage_timeout_s=stage_timeout_s, task=task, max_body_bytes=ctx.settings.max_body_bytes)


def authorize_release(ctx: AppContext, opener: Principal, rnd: Round) -> None:
    """Re-authorize the opener when the sum is read: a revoked or suspended agreement releases nothing."""
    note_expiry(ctx, rnd.agreement_id)
    policies.authorize(ctx.engine, Actor(opener.name, opener.role.value), Action.SECAGG_AGGREGATE,
                       rnd.agreement_id)
