"""Archived audit segments: signed copies of the audit log under ``VEILBOX_HOME/archive/audit/``, verifiable
across segments and into the live log.

`archive` copies the entries after the last archived one, up to a seq or a date (never past the signed head), into
segments of at most ``segment_size`` entries. Each segment is two files:

- ``audit-<first>-<last>.jsonl``: one entry per line (every chained field and its ``hash``, canonical JSON);
- ``audit-<first>-<last>.manifest.json``: first and last seq, count, the ``prev_hash`` the first entry links to,
  the last entry's ``hash``, the chain's hash algorithm, the data file's digest, the signing key's id, the time,
  and the service key's signature over all of these.

The run is audited (``audit.archive``). The live table keeps every entry: the chain's verification, its signed
checkpoints and the anchors (`gateway.anchoring`) start from seq 1, and pruning would turn each of them into a
proof that starts from an archived segment instead — more moving parts for a log whose rows are small. Retention
(`gateway.retention`) is therefore met by keeping; the segments are what goes to storage off the host.

`verify_archive` checks every manifest's signature, every entry's hash and link, that each segment starts where
the previous one ended (the first at seq 1 from the genesis hash), each data file's digest, and — given the live
log — that the live chain carries the last archived entry unchanged and verifies from there. It names the first
bad segment and seq: an edited, dropped, inserted or reordered row, a dropped or replaced segment, an edited
manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, select

from catalog.fingerprint import HashAlg
from cryptosuite import VerifyKey
from gateway import _tables as t
from gateway.anchoring import suite_for
from gateway.audit import FIELDS, GENESIS, AuditEvent, AuditLog, entry_hash
from gateway.settings import Settings
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

__all__ = ["ArchiveReport", "archive", "archive_dir", "verify_archive"]

FORMAT = "veilbox-audit-segment/1"
_MANIFEST = ".manifest.json"


def archive_dir(settings: Settings) -> Path:
    return settings.home / "archive" / "audit"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _manifest_message(m: dict[str, Any]) -> bytes:
    return b"veilbox-audit-segment|" + _canonical({k: v for k, v in m.items() if k != "signature"})


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _manifests(root: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    found: list[tuple[Path, dict[str, Any] | None]] = []
    for p in sorted(root.glob(f"audit-*{_MANIFEST}")):
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except ValueError:
            m = None
        found.append((p, m if isinstance(m, dict) else None))

    def first(item: tuple[Path, dict[str, Any] | None]) -> tuple[int, str]:
        m = item[1]
        try:
            return (int(m["first_seq"]) if m else -1, item[0].name)
        except (KeyError, TypeError, ValueError):
            return (-1, item[0].name)

    return sorted(found, key=first)


def archive(audit: AuditLog, root: Path, *, upto_seq: int | None = None, before: dt.datetime | None = None,
            segment_size: int = 10_000) -> list[dict[str, Any]]:
    """Archive the entries after the last archived one up to ``upto_seq`` or those older than ``before`` (and
    never past the signed head) as signed segments under ``root``; returns the new manifests (none: nothing to
    archive)."""
    if (upto_seq is None) == (before is None):
        raise ValueError("give exactly one of upto_seq and before")
    if segment_size < 1:
        raise ValueError("segment_size must be at least 1")
    root.mkdir(parents=True, exist_ok=True)
    done = [m for _, m in _manifests(root) if m is not None]
    last = max((int(m["last_seq"]) for m in done), default=0)
    prev = next((m["last_hash"] for m in done if int(m["last_seq"]) == last), GENESIS) if last else GENESIS
    e = t.audit_entries.c
    with audit.engine.connect() as conn:
        head = conn.execute(select(t.audit_head.c.seq).where(t.audit_head.c.id == 1)).scalar() or 0
        if before is not None:
            stamp = before.astimezone(dt.UTC).isoformat(timespec="microseconds")
            upto_seq = conn.execute(select(func.max(e.seq)).where(e.ts < stamp)).scalar() or 0
    end = min(int(cast(int, upto_seq)), int(head))
    manifests: list[dict[str, Any]] = []
    while last < end:
        rows, _ = audit.entries(since=last, limit=min(segment_size, end - last))
        if not rows:
            break
        if rows[0]["seq"] != last + 1 or rows[0]["prev_hash"] != prev:
            raise RuntimeError(f"the live log does not continue the archive at seq {last + 1}: verify it first")
        lines = b"".join(_canonical({k: r[k] for k in (*FIELDS, "hash")}) + b"\n" for r in rows)
        first_seq, last_seq = rows[0]["seq"], rows[-1]["seq"]
        stem = f"audit-{first_seq:012d}-{last_seq:012d}"
        _write_atomic(root / f"{stem}.jsonl", lines)
        m: dict[str, Any] = {
            "format": FORMAT, "file": f"{stem}.jsonl", "first_seq": first_seq, "last_seq": last_seq,
            "count": len(rows), "prev_hash": prev, "last_hash": rows[-1]["hash"], "alg": audit.alg,
            "file_digest": suite_for(audit.alg).digest(lines), "key_id": audit.keys.key_id,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        m["signature"] = audit.keys.signing.sign(_manifest_message(m)).hex()
        _write_atomic(root / f"{stem}{_MANIFEST}", _canonical(m) + b"\n")
        manifests.append(m)
        last, prev = last_seq, rows[-1]["hash"]
    if manifests:
        audit.append(AuditEvent(actor="system", role=SYSTEM, action=AuditAction.AUDIT_ARCHIVE, details={
            "segments": len(manifests), "first_seq": manifests[0]["first_seq"],
            "last_seq": manifests[-1]["last_seq"], "dir": root.name}))
    return manifests


@dataclass(frozen=True)
class ArchiveReport:
    ok: bool
    segments: int
    entries: int
    last_seq: int | None = None
    first_bad_segment: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sig_ok(public_key: VerifyKey, m: dict[str, Any]) -> bool:
    try:
        return bool(public_key.verify(_manifest_message(m), bytes.fromhex(str(m["signature"]))))
    except (KeyError, ValueError, TypeError):  # a missing or malformed signature
        return False


def verify_archive(root: Path, public_key: VerifyKey, live: AuditLog | None = None) -> ArchiveReport:
    """Check every segment under ``root``, the chain across them and (with ``live``) into the live log."""
    segs = _manifests(root)
    prev, expected, entries, alg = GENESIS, 1, 0, None
    n = 0
    for path, m in segs:
        name = path.name.removesuffix(_MANIFEST)

        def bad(seq: int | None, reason: str, name: str = name, n: int = n, entries: int = entries,
                done: int = expected - 1) -> ArchiveReport:
            return ArchiveReport(False, n, entries, done or None, name, seq, reason)

        if m is None or not _sig_ok(public_key, m):
            return bad(expected, "manifest signature is invalid (the manifest was altered)")
        if m.get("format") != FORMAT or m.get("alg") not in ("sha256", "sm3") or (alg and m["alg"] != alg):
            return bad(expected, "manifest format or hash algorithm is not the archive's")
        alg = m["alg"]
        if int(m["first_seq"]) != expected or m["prev_hash"] != prev:
            reason = ("a segment is missing before this one" if int(m["first_seq"]) > expected
                      else "segment overlaps or repeats the previous one")
            return bad(expected, reason)
        data_path = root / str(m["file"])
        if data_path.name != str(m["file"]) or not data_path.is_file():
            return bad(expected, "segment data file is missing")
        data = data_path.read_bytes()
        for line in data.splitlines():
            try:
                r = json.loads(line)
                seq = int(r["seq"])
                ok = seq == expected and r["prev_hash"] == prev and entry_hash(cast(HashAlg, alg), r) == r["hash"]
            except (ValueError, KeyError, TypeError):
                return bad(expected, "segment row is malformed")
            if not ok:
                reason = ("entry missing or out of order" if seq != expected else
                          "prev_hash does not link to the previous entry" if r["prev_hash"] != prev else
                          "entry content does not match its hash")
                return bad(min(seq, expected), reason)
            prev, expected, entries = r["hash"], expected + 1, entries + 1
        if expected - 1 != int(m["last_seq"]) or prev != m["last_hash"]:
            return bad(expected, "segment ends before its manifest's last seq (rows dropped)")
        if suite_for(alg).digest(data) != m["file_digest"]:
            return bad(None, "segment data file does not match its manifest's digest")
        n += 1
    last_seq = expected - 1 or None
    if live is not None and last_seq is not None:
        with live.engine.connect() as conn:
            row = conn.execute(select(t.audit_entries.c.hash).where(t.audit_entries.c.seq == last_seq)).first()
        if row is None or row.hash != prev:
            return ArchiveReport(False, n, entries, last_seq, "live", last_seq,
                                 "the live log does not carry the last archived entry unchanged")
        report = live.verify()
        if not report.ok:
            return ArchiveReport(False, n, entries, last_seq, "live", report.first_bad_seq,
                                 f"live log: {report.reason}")
    return ArchiveReport(True, n, entries, last_seq)
