"""The life cycles: the states of a job (`policies.jobs`) and of an agreement (`policies.agreements`).

The transitions live with the functions that make them (`policies.jobs.TRANSITIONS`, the agreement lifecycle);
this module only names the states, once, so the gateway, the console and the SDK spell them the same way.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AgreementState", "JobState"]


class JobState(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RELEASED = "released"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AgreementState(StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"  # accepted by the grantee, waiting for the owner to submit it for filing
    UNDER_REVIEW = "under_review"  # submitted to the data authority (数据主管部门)
    RETURNED = "returned"  # refused at review: back with the owner, with the reasons
    FILED = "filed"  # filed (备案) with its number; the owner activates it
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"  # derived, never stored
