"""Anchoring (存证): the signed audit head leaves the host, so a rewritten history can be proven later.

An *anchor* is the signed head of the audit chain at one moment: ``seq``, ``hash``, the head's signature over
them (`gateway.audit`, the same message every checkpoint signs), the signing key's id, the chain's hash algorithm,
the time of the entry at ``seq`` and the time it was anchored. A sink keeps them outside the service:

- ``file:/path/anchors.jsonl``: one JSON line appended per anchor, fsynced (a file on storage the service's host
  cannot rewrite: a WORM mount, another machine's share);
- ``https://…``: a webhook of an evidence service; the body is the anchor as canonical JSON and the header
  ``X-Veilbox-Anchor-Signature: hmac-<alg>=<hex>`` its HMAC under ``VEILBOX_ANCHOR_HMAC_KEY`` (the chain's hash
  algorithm); a failed POST is retried with exponential backoff.

Every attempt is audited (``audit.anchor``: seq, hash, sink, attempt, outcome), in the chain it anchors. The job
worker (`gateway.worker`) anchors every ``VEILBOX_ANCHOR_EVERY_S`` when the head advanced past the last anchored
seq by anything other than anchoring's own entries; ``veilbox audit anchor`` anchors on demand.

`check_anchors` proves the current chain extends every anchored head: it verifies each anchor's signature (an
edited anchor is caught), recomputes the chain from its first entry and requires the entry at each anchored seq to
carry the anchored hash. A history rewritten by someone holding the signing key — every entry re-hashed, every
checkpoint and the head re-signed, so `AuditLog.verify` passes — still differs from the hash anchored outside,
and so does a log truncated below an anchored seq.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from sqlalchemy import desc, select

from catalog.fingerprint import HashAlg
from cryptosuite import SUITES, Suite, VerifyKey, suite_of
from gateway import _tables as t
from gateway.audit import GENESIS, AuditEvent, AuditLog, _sig_message, entry_hash
from gateway.settings import Settings
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

log = logging.getLogger("veilbox.anchoring")

__all__ = ["Anchor", "AnchorCheck", "Anchorer", "FileSink", "WebhookSink", "check_anchors", "read_anchors",
           "signed_head", "sink_from_settings"]

SIGNATURE_HEADER = "X-Veilbox-Anchor-Signature"
FORMAT = "veilbox-anchor/1"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    signature: str
    key_id: str
    alg: str
    entry_ts: str
    anchored_at: str
    format: str = FORMAT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def body(self) -> bytes:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Anchor:
        return cls(seq=int(d["seq"]), hash=str(d["hash"]), signature=str(d["signature"]), key_id=str(d["key_id"]),
                   alg=str(d["alg"]), entry_ts=str(d["entry_ts"]), anchored_at=str(d["anchored_at"]),
                   format=str(d.get("format", FORMAT)))


def suite_for(alg: str) -> Suite:
    """The cryptographic suite whose hash is the chain's ``alg`` (``sha256``: intl, ``sm3``: sm)."""
    for name in SUITES:
        suite = suite_of(name)
        if suite.hash_name == alg:
            return suite
    raise ValueError(f"no cryptographic suite hashes with {alg!r}")


def signature_ok(public_key: VerifyKey, seq: int, h: str, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is the service key's signature of the head ``(seq, h)`` (the message
    `gateway.audit` signs for every checkpoint and head)."""
    try:
        return bool(public_key.verify(_sig_message(seq, h), bytes.fromhex(signature_hex)))
    except (ValueError, TypeError):
        return False


def signed_head(audit: AuditLog) -> Anchor | None:
    """The chain's signed head now, as an anchor; None for an empty log."""
    with audit.engine.connect() as conn:
        head = conn.execute(select(t.audit_head).where(t.audit_head.c.id == 1)).first()
        if head is None:
            return None
        ts = conn.execute(select(t.audit_entries.c.ts).where(t.audit_entries.c.seq == head.seq)).scalar()
    return Anchor(seq=int(head.seq), hash=head.hash, signature=head.signature, key_id=audit.keys.key_id,
                  alg=audit.alg, entry_ts=str(ts or ""), anchored_at=_now())


# --- sinks --------------------------------------------------------------------------------------------------------
class Sink(Protocol):
    label: str

    def send(self, anchor: Anchor) -> None: ...


class FileSink:
    """Appends one JSON line per anchor and fsyncs it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f"file:{path}"

    def send(self, anchor: Anchor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        with os.fdopen(fd, "ab") as f:
            f.write(anchor.body() + b"\n")
            f.flush()
            os.fsync(f.fileno())


def webhook_signature(alg: str, key: bytes, body: bytes) -> str:
    """The value of `SIGNATURE_HEADER`: ``hmac-<alg>=<hex>``, the HMAC of ``body`` under ``key`` in the suite of
    the chain's hash ``alg``."""
    return f"hmac-{alg}={suite_for(alg).hmac_hex(key, body)}"


class WebhookSink:
    """POSTs the anchor to an evidence service; any answer but 2xx (or no answer) is a failed attempt."""

    def __init__(self, url: str, key: bytes, timeout_s: float = 10.0) -> None:
        self.url = url
        self.key = key
        self.timeout_s = timeout_s
        u = urlsplit(url)
        self.label = f"{u.scheme}://{u.netloc}{u.path}"  # never the query: it may carry a token

    def send(self, anchor: Anchor) -> None:
        body = anchor.body()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={  # noqa: S310 (scheme checked)
            "Content-Type": "application/json", SIGNATURE_HEADER: webhook_signature(anchor.alg, self.key, body)})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (scheme checked in settings)
            if not 200 <= resp.status < 300:
                raise OSError(f"HTTP {resp.status}")


def sink_from_settings(settings: Settings, spec: str | None = None) -> Sink | None:
    spec = spec if spec is not None else settings.anchor_sink
    if spec is None:
        return None
    if spec.startswith("file:"):
        return FileSink(Path(spec.removeprefix("file:")))
    if settings.anchor_hmac_key is None:
        raise ValueError("an anchoring webhook needs VEILBOX_ANCHOR_HMAC_KEY")
    return WebhookSink(spec, settings.anchor_hmac_key.get_secret_value().encode())


# --- anchoring ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnchorOutcome:
    outcome: str  # "sent", "failed", "unchanged" (nothing new since the last anchor), "empty"
    seq: int | None = None
    hash: str | None = None
    attempts: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Anchorer:
    """Anchors the signed head at one sink. ``clock`` and ``sleep`` are injectable (tests use fake ones)."""

    def __init__(self, audit: AuditLog, sink: Sink, every_s: float = 3600.0, attempts: int = 4,
                 backoff_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.audit = audit
        self.sink = sink
        self.every_s = every_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.clock = clock
        self.sleep = sleep
        self._last: float | None = None
        self._busy = threading.Lock()

    def due(self) -> bool:
        return self._last is None or self.clock() - self._last >= self.every_s

    def tick(self) -> AnchorOutcome | None:
        """The scheduled duty: anchor when due and the head advanced; None when not due."""
        if not self.due():
            return None
        self._last = self.clock()
        return self.anchor()

    def tick_in_background(self) -> None:
        """`tick` on a thread of its own, so a slow evidence service never holds up the job worker; at most one
        at a time."""
        if not self.due() or not self._busy.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self.tick()
            except Exception:  # a store hiccup: next time
                log.exception("anchoring failed")
            finally:
                self._busy.release()

        threading.Thread(target=run, name="veilbox-anchor", daemon=True).start()

    def last_anchored_seq(self) -> int:
        """The seq of the newest head this sink received, from the audit log's ``audit.anchor`` entries."""
        e = t.audit_entries.c
        q = (select(e.details).where(e.action == AuditAction.AUDIT_ANCHOR, e.decision == "allow")
             .order_by(desc(e.seq)).limit(50))
        with self.audit.engine.connect() as conn:
            for (details,) in conn.execute(q):
                d = json.loads(details)
                if d.get("sink") == self.sink.label:
                    return int(d["seq"])
        return 0

    def advanced(self, head: Anchor) -> bool:
        """Whether an entry other than anchoring's own lies between the last anchored seq and ``head``."""
        e = t.audit_entries.c
        last = self.last_anchored_seq()
        q = (select(e.seq).where(e.seq > last, e.seq <= head.seq, e.action != AuditAction.AUDIT_ANCHOR).limit(1))
        with self.audit.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def anchor(self, force: bool = False) -> AnchorOutcome:
        """Send the signed head (unless it did not advance and not ``force``), retrying with exponential backoff;
        every attempt is audited."""
        head = signed_head(self.audit)
        if head is None:
            return AnchorOutcome("empty")
        if not force and not self.advanced(head):
            return AnchorOutcome("unchanged", head.seq, head.hash)
        error = None
        for attempt in range(1, self.attempts + 1):
            try:
                self.sink.send(head)
            except Exception as exc:  # any failure of the sink is one failed attempt
                error = f"{type(exc).__name__}: {exc}"[:300]
                self._audit(head, attempt, "failed", error)
                log.warning("anchoring seq %d at %s failed (attempt %d): %s", head.seq, self.sink.label, attempt,
                            error)
                if attempt < self.attempts:
                    self.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            self._audit(head, attempt, "sent", None)
            return AnchorOutcome("sent", head.seq, head.hash, attempt)
        return AnchorOutcome("failed", head.seq, head.hash, self.attempts, error)

    def _audit(self, head: Anchor, attempt: int, outcome: str, error: str | None) -> None:
        details: dict[str, Any] = {"sink": self.sink.label, "seq": head.seq, "hash": head.hash,
                                   "attempt": attempt, "outcome": outcome}
        if error is not None:
            details["error"] = error
        self.audit.append(AuditEvent(actor="system", role=SYSTEM, action=AuditAction.AUDIT_ANCHOR,
                                     decision="allow" if outcome == "sent" else "error", details=details))


def scheduled(audit: AuditLog, settings: Settings) -> Anchorer | None:
    """The worker's anchoring duty, or None when no sink is configured."""
    sink = sink_from_settings(settings)
    if sink is None:
        return None
    return Anchorer(audit, sink, every_s=settings.anchor_every_s)


# --- checking a chain against anchors -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AnchorCheck:
    ok: bool
    anchors: int
    entries: int
    first_bad_seq: int | None = None
    bad_anchor_line: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_anchors(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, parsed anchor or None when the line is not a JSON object) for each non-empty line."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError:
                yield n, None
                continue
            yield n, d if isinstance(d, dict) else None


def check_anchors(entries: Iterable[dict[str, Any]], anchors: Iterable[tuple[int, dict[str, Any] | None]],
                  public_key: VerifyKey, alg: str) -> AnchorCheck:
    """Prove the chain ``entries`` (in seq order, from seq 1) extends every anchored head.

    Fails, naming the anchor's line and the seq, when an anchor is malformed or its signature is not the
    service key's over its ``(seq, hash)`` (an edited anchor), when the chain itself is broken (a row whose hash
    or link does not hold), when the entry at an anchored seq carries another hash (history rewritten at or
    before that seq), or when the chain ends before an anchored seq (truncated)."""
    wanted: dict[int, tuple[int, str]] = {}
    count = 0
    for line, d in anchors:
        try:
            a = Anchor.from_dict(d) if d is not None else None
        except (KeyError, TypeError, ValueError):
            a = None
        if a is None:
            return AnchorCheck(False, count, 0, None, line, "anchor is malformed")
        if a.alg != alg:
            return AnchorCheck(False, count, 0, a.seq, line, f"anchor uses {a.alg}, the chain {alg}")
        if not signature_ok(public_key, a.seq, a.hash, a.signature):
            return AnchorCheck(False, count, 0, a.seq, line, "anchor signature is invalid (the anchor was altered)")
        prior = wanted.get(a.seq)
        if prior is not None and prior[1] != a.hash:
            return AnchorCheck(False, count, 0, a.seq, line, "two validly signed anchors disagree at this seq")
        wanted[a.seq] = (line, a.hash)
        count += 1
    prev, expected = GENESIS, 1
    halg = cast(HashAlg, alg)
    for e in entries:
        seq = int(e["seq"])
        if seq != expected or e["prev_hash"] != prev or entry_hash(halg, e) != e["hash"]:
            return AnchorCheck(False, count, expected - 1, min(seq, expected), None, "the chain is broken")
        w = wanted.pop(seq, None)
        if w is not None and w[1] != e["hash"]:
            return AnchorCheck(False, count, seq, seq, w[0],
                               f"history rewritten: the entry at anchored seq {seq} no longer has the anchored hash")
        prev, expected = e["hash"], expected + 1
    if wanted:
        seq = min(wanted)
        return AnchorCheck(False, count, expected - 1, seq, wanted[seq][0],
                           f"the chain ends at seq {expected - 1}, before anchored seq {seq} (truncated)")
    return AnchorCheck(True, count, expected - 1)
