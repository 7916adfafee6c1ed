"""The audit actions the service names itself.

Every ``/v1`` request and console page is audited under its route's name (``name=`` on the route, for example
``query.run`` or ``agreement.propose``; `gateway.app` fills it in). The entries below are the ones written
*without* a route — at start-up, by the worker, by sweeps — or named more precisely than their route; each is
defined here once, with what it records. `gateway.audit.scope_for` decides who reads which.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = ["DESCRIPTIONS", "INCIDENT_ACTIONS", "AuditAction"]


class AuditAction(StrEnum):
    SERVICE_INIT = "service.init"
    PRINCIPAL_CREATE = "principal.create"
    AGREEMENT_EXPIRE = "agreement.expire"
    AGREEMENT_MIGRATE = "agreement.migrate"
    AGREEMENT_DISPOSE = "agreement.dispose"
    REQUEST_TOO_LARGE = "request.too_large"
    REQUEST_UNKNOWN = "unknown"
    REQUEST_UNMATCHED = "unmatched"
    JOB_CHARGE = "job.charge"
    JOB_START = "job.start"
    JOB_SUCCEED = "job.succeed"
    JOB_RELEASE = "job.release"
    JOB_FAIL = "job.fail"
    JOB_DISCARD = "job.discard"
    JOB_INCIDENT = "job.incident"
    JOB_RECOVER = "job.recover"
    CONSOLE_VERIFY_CHECK = "console.verify.check"
    CONSOLE_PSI_RECEIPT = "console.psi.receipt"
    FILES_SWEEP = "files.sweep"
    STORAGE_INTEGRITY = "storage.integrity"
    KEYS_ROTATE = "keys.rotate"
    KEY_DESTROY = "keys.destroy"
    DATASET_DISPOSE = "dataset.dispose"
    SECAGG_STAGE = "secagg.stage"
    SECAGG_ABORT = "secagg.abort"
    AUDIT_ANCHOR = "audit.anchor"
    AUDIT_ARCHIVE = "audit.archive"
    ALERT_RAISE = "alert.raise"
    ALERT_DELIVER = "alert.deliver"


A = AuditAction
#: One line per action: what the entry records.
DESCRIPTIONS: Mapping[AuditAction, str] = MappingProxyType(
    {
        A.SERVICE_INIT: "the service initialised its store and created the first admin",
        A.PRINCIPAL_CREATE: "a principal was created (by an admin, or the first admin at initialisation)",
        A.AGREEMENT_EXPIRE: "an agreement's validity period ended (recorded once, the first time anyone touches it)",
        A.AGREEMENT_MIGRATE: "an agreement in force before filing (备案) existed was filed by the upgrade",
        A.AGREEMENT_DISPOSE: "one step of an ended agreement's disposal (jobs cancelled and refunded, outputs sealed "
        "or deleted, model certificates revoked) or its signed disposal record",
        A.REQUEST_TOO_LARGE: "a /v1 body over the size limit was refused before routing",
        A.REQUEST_UNKNOWN: "a request whose action is not yet known (replaced by its route's name)",
        A.REQUEST_UNMATCHED: "a request that matched no route",
        A.JOB_CHARGE: "an inline query's budget was charged before it ran (the grantee's; its outcome follows)",
        A.JOB_START: "the worker started a job",
        A.JOB_SUCCEED: "a job's output waits for its owner's release (custom code)",
        A.JOB_RELEASE: "a job's output passed the release gate and left, with its digest",
        A.JOB_FAIL: "a job failed, with its public reason and whether it was refunded",
        A.JOB_DISCARD: "a finished job's output was discarded: the job was cancelled or recovered meanwhile",
        A.JOB_INCIDENT: "the cause behind a charged failure or fallback release (owner, admin and regulator only)",
        A.JOB_RECOVER: "at start-up, a job a previous process left running was failed and refunded",
        A.CONSOLE_VERIFY_CHECK: "a plain verification check from the console (keyed subject hash only)",
        A.CONSOLE_PSI_RECEIPT: "a bank read one of its PSI or anonymous-check receipts in the console",
        A.FILES_SWEEP: "at start-up, temporary files a crashed writer left in the home were removed (count and names)",
        A.STORAGE_INTEGRITY: "a stored file failed its integrity check when it was about to be read (missing, or "
        "not its recorded fingerprint): nothing was read from it; the dataset, the key and the reason",
        A.KEYS_ROTATE: "the master key was rotated: every wrapped key re-wrapped (old and new provider, count)",
        A.DATASET_DISPOSE: "a withdrawn dataset's copy was disposed of after its grace period: its data key "
                           "destroyed (crypto-shredding) and its sealed file deleted; the record is kept",
        A.KEY_DESTROY: "a data key was destroyed (crypto-shredding): what it encrypted is unreadable for good",
        A.SECAGG_STAGE: "a secure-aggregation round's stage closed (all arrived, deadline or its opener), with counts",
        A.SECAGG_ABORT: "a secure-aggregation round aborted (deadline, below threshold, its opener): nothing released",
        A.AUDIT_ANCHOR: "one attempt to anchor the signed audit head (存证) at the configured sink: seq, hash, outcome",
        A.AUDIT_ARCHIVE: "signed segments of the audit log were archived under the home (first and last seq, count)",
        A.ALERT_RAISE: "the worker raised an alert (监测预警) once for its condition: rule, alert id, count, threshold",
        A.ALERT_DELIVER: "one attempt to deliver an alert to a subscriber's webhook: attempt, outcome, next attempt",
    }
)
del A

#: Failures behind a charged job: for the owner, the admin and the regulator, never the grantee.
INCIDENT_ACTIONS: tuple[AuditAction, ...] = (AuditAction.JOB_INCIDENT,)
