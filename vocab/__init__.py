"""The shared words of the product, each defined once: roles, job kinds, states, audit actions, error codes.

The bottom layer: every package of ours except `mpc` may import it, and it imports nothing of ours
(import-linter, ``make lint``).

- `roles`: `Role` (a principal's role), `Party` (relation to an agreement), `ANALYSTS`, `SYSTEM`.
- `jobs`: `JobKind` and `JOB_KINDS` (per kind: the agreement permission, the handler, the outputs).
- `states`: `JobState`, `AgreementState`.
- `actions`: `AuditAction`, the audit actions the service names itself, with a description each.
- `errors`: `ErrorCode` and `CATALOG` (code → HTTP status, public message).
"""

from __future__ import annotations

from vocab.actions import AuditAction
from vocab.errors import CATALOG, ErrorCode
from vocab.jobs import JOB_KINDS, JobKind, JobKindSpec
from vocab.roles import ANALYSTS, Party, Role
from vocab.states import AgreementState, JobState

__all__ = [
    "ANALYSTS",
    "CATALOG",
    "JOB_KINDS",
    "AgreementState",
    "AuditAction",
    "ErrorCode",
    "JobKind",
    "JobKindSpec",
    "JobState",
    "Party",
    "Role",
]
