"""Fingerprints verified at read, in the service: a registered copy is checked before a job or a PSI setup reads it.

`check_copies` runs `catalog.registry.verify_copy` on each dataset a job is about to read (`catalog.storage`: a
plain copy's digest against the recorded fingerprint; a sealed copy must name the dataset's own data key, is
decrypted with the home's key service — every chunk authenticated by its AEAD — and its plaintext's digest
compared; once per process and file version). A copy that is missing or differs fails closed: an audit
entry ``storage.integrity`` (role system, the dataset, its key and the reason) is committed, and the job fails
before anything is read (``storage.fingerprint_mismatch`` or ``storage.missing``, refunded); elsewhere the caller
gets ``UNAVAILABLE`` with that reason (`catalog.storage.IntegrityFailure`).

`check_model` does the same for a released model's weights before scoring reads them: the file under the storage
root's ``models/`` is checked against the digest its card records (``weights.sha256``: ``"<alg>:<hex>"`` of the
plain weights; a sealed file must be sealed under the model's own data key ``model:<job id>`` and is decrypted to
compare). A missing or altered file refuses the call with ``UNAVAILABLE`` (``storage.missing`` /
``storage.fingerprint_mismatch``) and audits ``storage.integrity`` (role system, the model's agreement and source
datasets, so the data's owner sees it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from catalog import registry
from catalog.models import ModelRecord
from catalog.registry import Dataset
from catalog.storage import MISSING, IntegrityFailure, verify_file
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.sealing import sealer_of
from sandbox.jobs import JobFailed
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

__all__ = ["check_copies", "check_copy", "check_model"]

log = logging.getLogger(__name__)


def _audit_failure(ctx: AppContext, e: IntegrityFailure, expected: str | None, details: dict[str, Any],
                   **where: Any) -> None:
    """The ``storage.integrity`` entry of a failed check: the system's, denied, with the stored file's key."""
    ctx.audit.append(AuditEvent(actor=SYSTEM, role=SYSTEM, action=AuditAction.STORAGE_INTEGRITY, decision="deny",
                                code=str(e.code), output_digest=expected, details=details, **where))


def check_copy(ctx: AppContext, ds: Dataset) -> Dataset:
    """``ds`` once its stored copy matches its fingerprint; else audited and `IntegrityFailure` (``UNAVAILABLE``).
    A disposed dataset has no copy left and is not checked (nothing reads it)."""
    if ds.disposed_at is not None:
        return ds
    try:
        registry.verify_copy(ds, sealer_of(ctx))
    except IntegrityFailure as e:
        log.error("dataset %s: stored copy %s failed its integrity check (%s)", ds.name, e.key, e.reason)
        _audit_failure(ctx, e, ds.fingerprint, {"key": e.key, "reason": e.reason}, dataset=ds.name)
        raise
    return ds


def check_copies(ctx: AppContext, datasets: Iterable[Dataset]) -> None:
    """`check_copy` for each of a job's datasets, as a job failure before any read (refunded)."""
    for ds in datasets:
        try:
            check_copy(ctx, ds)
        except IntegrityFailure as e:
            raise JobFailed(e.reason, before_read=True) from None


def _weights_fingerprint(m: ModelRecord) -> str | None:
    """The card's digest of the plain weights as ``"<alg>:<hex>"`` (a bare hex is SHA-256), or ``None``."""
    weights = m.card.get("weights") if isinstance(m.card, dict) else None
    expected = weights.get("sha256") if isinstance(weights, dict) else None
    if not isinstance(expected, str) or not expected:
        return None
    return expected if ":" in expected else f"sha256:{expected}"


def check_model(ctx: AppContext, m: ModelRecord) -> Path:
    """Where ``m``'s weights live once they match the digest in its card; else audited and `IntegrityFailure`
    (``UNAVAILABLE``). Checked on every call (a file unchanged since its last check costs one ``stat``)."""
    key = m.weights_path
    fingerprint = _weights_fingerprint(m)
    try:
        models = ctx.settings.storage.area("models")
        try:
            path = models.path_of(key)
        except ValueError:  # not a key under models/: nothing there is read
            raise IntegrityFailure(MISSING, key) from None
        if fingerprint is None:  # a card without a digest: nothing to compare, the file must still be there
            if not models.exists(key):
                raise IntegrityFailure(MISSING, key)
        else:
            verify_file(path, fingerprint, key=key, key_id=f"model:{m.job_id}", sealer=sealer_of(ctx))
    except IntegrityFailure as e:
        log.error("model %s: stored weights %s failed their integrity check (%s)", m.id, e.key, e.reason)
        _audit_failure(ctx, e, fingerprint, {"key": f"models/{e.key}", "model_id": m.id, "reason": e.reason},
                       agreement_id=m.agreement_id, dataset=",".join(sorted(m.source_datasets)) or None)
        raise
    return path
