"""Fingerprints verified at read, in the service: a registered copy is checked before a job or a PSI setup reads it.

`check_copies` runs `catalog.registry.verify_copy` on each dataset a job is about to read (`catalog.storage`: a
plain copy's digest against the recorded fingerprint; a sealed copy must name the dataset's own data key, is
decrypted with the home's key service — every chunk authenticated by its AEAD — and its plaintext's digest
compared; once per process and file version). A copy that is missing or differs fails closed: an audit
entry ``storage.integrity`` (role system, the dataset, its key and the reason) is committed, and the job fails
before anything is read (``storage.fingerprint_mismatch`` or ``storage.missing``, refunded); elsewhere the caller
gets ``UNAVAILABLE`` with that reason (`catalog.storage.IntegrityFailure`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from catalog import registry
from catalog.registry import Dataset
from catalog.storage import IntegrityFailure
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.sealing import sealer_of
from sandbox.jobs import JobFailed
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

__all__ = ["check_copies", "check_copy"]

log = logging.getLogger(__name__)


def check_copy(ctx: AppContext, ds: Dataset) -> Dataset:
    """``ds`` once its stored copy matches its fingerprint; else audited and `IntegrityFailure` (``UNAVAILABLE``).
    A disposed dataset has no copy left and is not checked (nothing reads it)."""
    if ds.disposed_at is not None:
        return ds
    try:
        registry.verify_copy(ds, sealer_of(ctx))
    except IntegrityFailure as e:
        log.error("dataset %s: stored copy %s failed its integrity check (%s)", ds.name, e.key, e.reason)
        ctx.audit.append(
            AuditEvent(
                actor=SYSTEM,
                role=SYSTEM,
                action=AuditAction.STORAGE_INTEGRITY,
                dataset=ds.name,
                decision="deny",
                code=str(e.code),
                output_digest=ds.fingerprint,
                details={"key": e.key, "reason": e.reason},
            )
        )
        raise
    return ds


def check_copies(ctx: AppContext, datasets: Iterable[Dataset]) -> None:
    """`check_copy` for each of a job's datasets, as a job failure before any read (refunded)."""
    for ds in datasets:
        try:
            check_copy(ctx, ds)
        except IntegrityFailure as e:
            raise JobFailed(e.reason, before_read=True) from None
