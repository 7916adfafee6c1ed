"""Secure-aggregation rounds: the gateway's registry of `mpc.secagg` servers and who may open and read them
(docs/api.md, "Secure aggregation"; the HTTP routes are `gateway.routes.secagg`).

A round is opened by an operator under an active agreement (`policies.Action.SECAGG_AGGREGATE`, checked by
`open_round`) for a fixed list of participants: parties to that agreement who may contribute (its owner and the
``holders`` it names, `policies.agreements.record.secagg_parties`), principals that exist, are enabled and are not
admin or regulator — checked by `check_participants`, with one answer for every name that fails, whatever the
reason. The opener is authorized again when it reads the sum (`authorize_release`). The
registry holds, per round, the public `RoundConfig`, one `SecAggServer`, the opener, the agreement, an optional
public ``task`` (what the participants are asked to contribute: e.g. the current model of a federated training)
and the stage deadline.

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
after the stage began) passes, or when the opener closes it. Deadlines are enforced lazily, with the registry's
clock, by every request that touches the round and by every ``open``/``list``: a round nobody touches stays in
its stage, but it is closed (and aborted, if too few sent) before anything else happens to it or before its
slot is counted. Closing with fewer than the threshold aborts the round: the server drops every masked input
and share it held, and nothing is released.

Lifetime and limits
-------------------
Rounds live in memory only: **a restart of the gateway aborts every open round** (their ids then answer
``NOT_FOUND_OR_FORBIDDEN``; participants must join a new round with fresh keys — keys are never reused across
rounds). Finished rounds are kept `RETAIN_S` seconds for their result, then forgotten. At most `MAX_OPEN_ROUNDS`
rounds are open at once (`MAX_OPEN_PER_OPENER` per operator; ``QUOTA_EXCEEDED`` beyond), with at most
`MAX_PARTICIPANTS` participants, `MAX_ROUND_WORDS` words held per round (participants × vector length) and a
public task of at most `MAX_TASK_BYTES`; a federated-training task must fit its plan
(`sandbox.federated.task_problems`, ``INVALID_REQUEST``). Each message body is capped by `max_message_bytes` for
its kind and the round's size, before it is parsed. One lock per round serialises its (not thread-safe) server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

import policies
from catalog.errors import (
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    QUOTA_EXCEEDED,
    DomainError,
)
from gateway import identities
from gateway.audit import AuditEvent
from gateway.errors import mpc_refusal
from gateway.identities import Principal, RoleName
from gateway.services.agreements import note_expiry
from mpc.errors import MpcError
from mpc.secagg import (
    AdvertiseKeys,
    ClientMessage,
    MaskedInput,
    RoundAborted,
    RoundConfig,
    SecAggServer,
    ServerMessage,
    ShareKeys,
    Stage,
    UnmaskShares,
    new_round,
    parse_client_message,
)
from policies import Action, Actor
from policies.agreements.record import secagg_parties
from sandbox.federated import task_problems as federated_task_problems

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


def sum_digest(total: NDArray[np.uint32]) -> str:
    """``sha256:`` of the sum as little-endian uint32 words: the round's output digest in the audit log."""
    return "sha256:" + hashlib.sha256(total.astype("<u4", copy=False).tobytes()).hexdigest()


@dataclass(eq=False)
class Round:
    """One round: its public config, its protocol server and who opened it under which agreement."""

    config: RoundConfig
    opener: str
    agreement_id: str
    task: dict[str, Any] | None
    stage_timeout: float
    server: SecAggServer
    opened_at: float
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.config.round_id

    @property
    def stage(self) -> Stage:
        return self.server.stage

    @property
    def final(self) -> bool:
        return self.server.stage in _FINAL

    def visible_to(self, who: str) -> bool:
        return who == self.opener or who in self.config.point

    def abort_reason(self) -> str | None:
        if self.server.stage is not Stage.ABORTED:
            return None
        try:
            self.server.result()
        except RoundAborted as exc:
            return exc.message
        return "round aborted"  # pragma: no cover - an aborted server always refuses its result


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

    @property
    def digest(self) -> str:
        return sum_digest(self.total)

    def to_json(self) -> dict[str, Any]:
        return {"round_id": self.round_id, "stage": Stage.DONE.value, "ready": True,
                "sum": base64.b64encode(self.total.astype("<u4", copy=False).tobytes()).decode("ascii"),
                "encoding": "uint32-le-base64", "vector_length": int(self.total.size),
                "modulus_bits": self.modulus_bits, "survivors": list(self.survivors), "output_digest": self.digest}


class RoundRegistry:
    """The open and recently finished rounds of one gateway process (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_open: int = MAX_OPEN_ROUNDS,
                 max_open_per_opener: int = MAX_OPEN_PER_OPENER, retain_s: float = RETAIN_S) -> None:
        self.clock = clock
        self.max_open = max_open
        self.max_open_per_opener = max_open_per_opener
        self.retain_s = retain_s
        self._rounds: dict[str, Round] = {}
        self._lock = threading.Lock()

    # -- the table ----------------------------------------------------------------------------------------

    def open(self, opener: str, agreement_id: str, participants: list[str], threshold: int, vector_length: int,
             modulus_bits: int = 32, *, stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S,
             task: dict[str, Any] | None = None, max_body_bytes: int | None = None) -> Round:
        """A new round in stage ``advertise_keys``; ``POLICY_DENIED`` against `round_policy`, ``INVALID_REQUEST``
        for a bad shape, ``QUOTA_EXCEEDED`` if too many rounds are open."""
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
        now = self.clock()
        rnd = Round(config=config, opener=opener, agreement_id=agreement_id, task=task,
                    stage_timeout=float(stage_timeout_s), server=SecAggServer(config), opened_at=now,
                    deadline=now + float(stage_timeout_s))
        with self._lock:
            self._sweep(now)
            running = [r for r in self._rounds.values() if not r.final]
            if len(running) >= self.max_open:
                raise DomainError(QUOTA_EXCEEDED, "too many secure-aggregation rounds are open; try again later",
                                  [{"reason": "secagg.open_rounds", "limit": self.max_open}])
            if sum(r.opener == opener for r in running) >= self.max_open_per_opener:
                raise DomainError(QUOTA_EXCEEDED, "you have too many open secure-aggregation rounds",
                                  [{"reason": "secagg.open_rounds_per_operator", "limit": self.max_open_per_opener}])
            self._rounds[config.round_id] = rnd
        return rnd

    def get(self, round_id: str, who: str) -> Round:
        """The round, if ``who`` opened it or takes part in it; ``NOT_FOUND_OR_FORBIDDEN`` otherwise."""
        with self._lock:
            rnd = self._rounds.get(round_id)
        if rnd is None or not rnd.visible_to(who):
            raise DomainError(NOT_FOUND_OR_FORBIDDEN, "round not found")
        return rnd

    def visible(self, who: str, *, waiting_for: bool = False) -> list[Round]:
        """The rounds ``who`` opened or takes part in, oldest first (deadlines enforced first); with
        ``waiting_for``, only those whose current stage still waits for a message from ``who``."""
        with self._lock:
            self._sweep(self.clock())
            rounds = sorted((r for r in self._rounds.values() if r.visible_to(who)), key=lambda r: r.opened_at)
        if waiting_for:
            rounds = [r for r in rounds if self._waits_for(r, who)]
        return rounds

    @staticmethod
    def _waits_for(rnd: Round, who: str) -> bool:
        with rnd.lock:
            return not rnd.final and who in rnd.server.pending()

    # -- one round ----------------------------------------------------------------------------------------

    def submit(self, rnd: Round, who: str, endpoint: str, data: Any) -> list[dict[str, Any]]:
        """Accept one client message on ``endpoint``; returns the stage closures it caused (for the audit)."""
        if who not in rnd.config.point:
            raise DomainError(POLICY_DENIED, "only the round's participants send messages",
                              [{"reason": "secagg.not_participant"}])
        if not isinstance(data, Mapping):
            raise DomainError(INVALID_REQUEST, "a message must be a JSON object")
        try:
            message = parse_client_message(data)
        except MpcError as exc:
            raise _refusal(exc) from None
        kind = KINDS[endpoint]
        if not isinstance(message, kind):
            raise DomainError(INVALID_REQUEST, f"this endpoint takes {kind.model_fields['kind'].default} messages")
        if message.sender != who:
            raise DomainError(POLICY_DENIED, "a message's sender must be the authenticated principal",
                              [{"reason": "secagg.sender_mismatch"}])
        closed: list[dict[str, Any]] = []
        with rnd.lock:
            self._tick(rnd, closed)
            try:
                rnd.server.receive(message)
            except MpcError as exc:
                raise _refusal(exc) from None
            if not rnd.server.pending():
                self._close(rnd, "all_arrived", closed)
        return closed

    def publish(self, rnd: Round, who: str, what: str) -> Published:
        """The roster (``keys``), ``who``'s forwarded shares (``shares``) or the survivor list (``survivors``)."""
        if what == "shares" and who not in rnd.config.point:
            raise DomainError(POLICY_DENIED, "shares are forwarded only to participants",
                              [{"reason": "secagg.not_participant"}])
        with rnd.lock:
            self._tick(rnd, [])
            server, stage = rnd.server, rnd.server.stage
            message: ServerMessage | None = None
            try:
                if what == "keys" and stage not in (Stage.ADVERTISE_KEYS, Stage.ABORTED):
                    message = server.key_roster()
                elif what == "shares" and stage is Stage.MASKED_INPUT:
                    message = server.forwarded_shares(who)
                elif what == "survivors" and stage is Stage.UNMASK:
                    message = server.unmask_request()
            except MpcError as exc:
                raise _refusal(exc) from None
            return Published(rnd.id, stage, message, rnd.abort_reason())

    def close(self, rnd: Round, who: str) -> list[dict[str, Any]]:
        """The opener ends the current stage now (aborting the round if fewer than the threshold sent)."""
        self._require_opener(rnd, who)
        closed: list[dict[str, Any]] = []
        with rnd.lock:
            self._tick(rnd, closed)
            if rnd.final:
                raise DomainError(INVALID_REQUEST, f"the round is over (stage {rnd.stage.value})")
            self._close(rnd, "operator", closed)
        return closed

    def result(self, rnd: Round, who: str) -> Released | Published:
        """For the opener: the released sum once the round is done, the stage while it runs; ``INVALID_REQUEST``
        (nothing released) if it aborted."""
        self._require_opener(rnd, who)
        with rnd.lock:
            self._tick(rnd, [])
            server = rnd.server
            if server.stage is Stage.ABORTED:
                raise DomainError(INVALID_REQUEST, f"the round aborted ({rnd.abort_reason()}); nothing is released",
                                  [{"reason": "secagg.aborted"}])
            if server.stage is not Stage.DONE:
                return Published(rnd.id, server.stage, None, None)
            return Released(rnd.id, server.result(), server.survivors, rnd.config.modulus_bits)

    def status(self, rnd: Round, who: str) -> dict[str, Any]:
        """The round's public state; the opener also sees who the current stage still waits for."""
        with rnd.lock:
            self._tick(rnd, [])
            server = rnd.server
            out: dict[str, Any] = {
                "id": rnd.id, "agreement_id": rnd.agreement_id, "opened_by": rnd.opener,
                "config": rnd.config.to_json(), "stage": server.stage.value, "stage_timeout_s": rnd.stage_timeout,
                "deadline_in_s": None if rnd.final else max(0.0, rnd.deadline - self.clock()),
                "waiting_for": len(server.pending()) if not rnd.final else 0,
                "survivors": list(server.survivors), "history": list(rnd.history),
                "abort_reason": rnd.abort_reason(), "task": rnd.task,
            }
            if who == rnd.opener:
                out["pending"] = sorted(server.pending()) if not rnd.final else []
            return out

    # -- internals ----------------------------------------------------------------------------------------

    @staticmethod
    def _shape_problems(participants: list[str], vector_length: int, stage_timeout_s: float,
                        task: dict[str, Any] | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if len(participants) > MAX_PARTICIPANTS:
            out.append({"field": "participants", "problem": f"at most {MAX_PARTICIPANTS} participants"})
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

    def _close(self, rnd: Round, by: str, closed: list[dict[str, Any]]) -> None:
        """Close ``rnd``'s current stage (caller holds ``rnd.lock``) and record it."""
        server = rnd.server
        stage = server.stage
        received = len(server.expected() - server.pending())
        server.close_stage()
        now = self.clock()
        entry = {"stage": stage.value, "by": by, "received": received, "next": server.stage.value}
        rnd.history.append(entry)
        closed.append(entry)
        if rnd.final:
            rnd.finished_at = now
        else:
            rnd.deadline = now + rnd.stage_timeout

    def _tick(self, rnd: Round, closed: list[dict[str, Any]]) -> None:
        """Close the current stage if its deadline has passed (caller holds ``rnd.lock``)."""
        if not rnd.final and self.clock() >= rnd.deadline:
            self._close(rnd, "deadline", closed)

    def _sweep(self, now: float) -> None:
        """Enforce every round's deadline and forget old finished rounds (caller holds the registry lock)."""
        for rnd in list(self._rounds.values()):
            with rnd.lock:
                self._tick(rnd, [])
        finished = sorted((r for r in self._rounds.values() if r.finished_at is not None),
                          key=lambda r: r.finished_at or 0.0)
        for i, rnd in enumerate(finished):
            if now - (rnd.finished_at or now) > self.retain_s or len(finished) - i > MAX_KEPT:
                del self._rounds[rnd.id]


def rounds_for(ctx: Any) -> RoundRegistry:
    """The registry of the service context ``ctx`` (`gateway.caches.Caches.secagg_rounds`: one per context,
    forgotten with it)."""
    reg: RoundRegistry = ctx.caches.secagg_rounds
    return reg


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
