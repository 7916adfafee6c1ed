"""Datasets as a given principal may see them (the API's dataset routes and the console's catalog pages), their
withdrawal by the owner and the disposal of a withdrawn dataset's copy after the grace period.

Withdrawal (`withdraw`): `policies.withdrawal.withdraw` marks the dataset withdrawn, suspends its agreements and
cancels (refunding) its open jobs in one transaction with the request's audit entry; after the commit this process
retires the dataset's query engines (`sandbox.jobs.query.QueryEngines.retire`), so no idle worker keeps its
plaintext in memory. Disposal (`dispose_due`, the job worker's scheduled duty and ``veilbox dataset dispose-due``):
once ``VEILBOX_WITHDRAW_GRACE_S`` has passed, the dataset's data key is destroyed (crypto-shredding) in one
transaction with the signed disposal record (``dataset.dispose``: what — name and fingerprint —, how — key
destroyed, file deleted —, when) and the record's ``disposed_at``; then the sealed file, unreadable from that
commit on, is deleted. A crash between the two leaves an unreadable file the next run deletes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, select

from catalog import registry
from catalog.keyring import data_keys
from catalog.sealed import key_id_of
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.identities import Principal
from gateway.journal import request_entry
from policies._clock import aware
from policies.actor import Actor
from policies.withdrawal import Withdrawal
from policies.withdrawal import withdraw as withdraw_dataset
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

__all__ = ["dispose_due", "public_view", "withdraw"]

log = logging.getLogger(__name__)


def public_view(ds: registry.Dataset, viewer: Principal) -> dict[str, Any]:
    """The dataset as `viewer` may see it: exact row counts and ingest reports only for the owner."""
    mine = viewer.name == ds.owner
    out: dict[str, Any] = {
        "name": ds.name,
        "owner": ds.owner,
        "description": ds.description,
        "grade": ds.grade.value,
        "personal": ds.personal,
        "sensitive": ds.sensitive,
        "fingerprint": ds.fingerprint,
        "max_rows_per_unit": ds.max_rows_per_unit,
        "columns": {c: i.public() for c, i in ds.columns.items()},
        "rows": ds.rows if mine else None,
        "created_at": ds.created_at.isoformat(),
        "state": ds.state,
    }
    if mine:
        out["ingest"] = ds.ingest_report
    return out


def _details(w: Withdrawal, reason: str) -> dict[str, Any]:
    return {"reason": reason, "agreements": list(w.agreements), "jobs": list(w.jobs), "refunded": list(w.refunded)}


def withdraw(ctx: AppContext, who: Principal, name: str, reason: str, ev: AuditEvent) -> dict[str, Any]:
    """``POST /datasets/{name}/withdraw``: the withdrawal with the request's entry, then the engines retired."""
    changed: list[Withdrawal] = []

    def note(_conn: Connection, entry: AuditEvent) -> bool:
        entry.details.update(_details(changed[-1], reason.strip()))
        return True

    w = withdraw_dataset(ctx.engine, Actor(who.name, who.role.value), name, reason,
                         journal=request_entry(ctx.audit, ev, note), noted=changed.append)
    ev.details.update(_details(w, reason.strip()))
    retire_engines(ctx, name)
    return {"dataset": name, "state": registry.WITHDRAWN, "withdrawn_at": w.withdrawn_at.isoformat(),
            "dispose_after": (w.withdrawn_at + dt.timedelta(seconds=ctx.settings.withdraw_grace_s)).isoformat(),
            "agreements_suspended": list(w.agreements), "jobs_cancelled": list(w.jobs),
            "jobs_refunded": list(w.refunded)}


def retire_engines(ctx: AppContext, name: str) -> int:
    """Stop this process's query workers over ``name`` (those lent out when their query ends)."""
    rt = ctx.runtime
    if rt is None:
        return 0
    return int(rt.engines.retire(name))


def _signed(ctx: AppContext, record: dict[str, Any]) -> dict[str, Any]:
    msg = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return {"record": record, "signature": ctx.audit.keys.signing.sign(msg).hex(), "key_id": ctx.audit.keys.key_id}


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _key_ids(ctx: AppContext, ds: registry.Dataset) -> list[str]:
    """Every data key the dataset's copies were sealed under (``dataset:<name>-…``, `catalog.ingest`), and the one
    its file's header names."""
    prefix = f"dataset:{ds.name}-"
    with ctx.engine.connect() as conn:
        ids = {i for i in conn.execute(select(data_keys.c.object_id)).scalars() if i.startswith(prefix)}
    try:
        ids.add(key_id_of(Path(ds.path)))
    except (OSError, ValueError, KeyError):
        pass  # no file, or not sealed
    return sorted(ids)


def dispose_due(ctx: AppContext, *, now: dt.datetime | None = None) -> list[str]:
    """Dispose of every withdrawn dataset whose grace period ended (see the module docstring); the names disposed
    of now. A disposed dataset's file that a crash left behind (unreadable: its key is gone) is deleted too."""
    now = aware(now)
    done: list[str] = []
    for ds in registry.disposal_due(ctx.engine, ctx.settings.withdraw_grace_s, now):
        retire_engines(ctx, ds.name)
        keys = _key_ids(ctx, ds)
        record = {"dataset": ds.name, "fingerprint": ds.fingerprint, "keys": keys,
                  "how": ["data_key_destroyed", "sealed_file_deleted"], "at": now.isoformat()}
        with ctx.engine.begin() as conn:
            if not registry.mark_disposed_in(conn, ds.name, now):
                continue  # another worker disposed of it meanwhile
            if keys:
                conn.execute(delete(data_keys).where(data_keys.c.object_id.in_(keys)))
            ctx.audit.append_in(conn, AuditEvent(
                actor=SYSTEM, role=SYSTEM, action=AuditAction.DATASET_DISPOSE, dataset=ds.name,
                output_digest=ds.fingerprint, details=_signed(ctx, record)))
        _unlink(Path(ds.path))
        log.info("dataset %s disposed of (data key destroyed, sealed copy deleted)", ds.name)
        done.append(ds.name)
    for ds in registry.list_all(ctx.engine):
        if ds.disposed_at is not None and ds.name not in done:
            _unlink(Path(ds.path))
    return done
