"""Metadata tables owned by `policies`. Migrations live with the gateway, which composes every package's
``metadata``; tests call ``metadata.create_all``.

Exact numbers (budgets, costs) are stored as ``"num/den"`` text, never as floats. Instants are stored as UTC
(`UTCDateTime` re-attaches the zone SQLite drops). No foreign keys point into other packages' metadata.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.sql.expression import false, true
from sqlalchemy.types import TypeDecorator

from vocab.jobs import STORED_KINDS
from vocab.states import AgreementState, JobState

metadata = MetaData()

EXACT = 200  # length of a "num/den" column


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (naive storage) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime stored")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# The stored states (``expired`` is derived, never stored) and kinds, as plain text for the CHECK constraints.
AGREEMENT_STATES = tuple(s.value for s in AgreementState if s is not AgreementState.EXPIRED)
JOB_STATES = tuple(s.value for s in JobState)
JOB_KINDS = tuple(k.value for k in STORED_KINDS)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


agreements = Table(
    "agreements",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("grantee", String(64), nullable=False, index=True),
    Column("title", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document_hash", String(80), nullable=False),
    Column("document_json", Text, nullable=False),
    Column("valid_from", UTCDateTime, nullable=False),
    Column("valid_until", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("accepted_at", UTCDateTime, nullable=True),
    Column("suspended_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("expired_recorded", Boolean, nullable=False, default=False),
    Column("expired_recorded_at", UTCDateTime, nullable=True),
    # filing (备案, migration 0013): whether acceptance leads to review and filing, the number issued, when, and
    # who suspended (the owner's suspension the owner lifts, the authority's only the authority)
    Column("filing_required", Boolean, nullable=False, default=False, server_default=false()),
    Column("filing_number", String(24), nullable=True),
    Column("filed_at", UTCDateTime, nullable=True),
    Column("suspended_by", String(16), nullable=True),
    Column("migration_noted", Boolean, nullable=False, default=True, server_default=true()),
    # the named reviewers the authority requires before filing: JSON {name: kind} (migration 0021)
    Column("reviewers_json", Text, nullable=True),
    CheckConstraint(_in("state", AGREEMENT_STATES), name="ck_agreements_state"),
    UniqueConstraint("filing_number", name="uq_agreements_filing_number"),
    CheckConstraint("version >= 1", name="ck_agreements_version"),
)

agreement_versions = Table(
    "agreement_versions",
    metadata,
    Column("agreement_id", String(40), ForeignKey("agreements.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document_hash", String(80), nullable=False),
    Column("document_json", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("agreement_id", "version"),
)

agreement_reviews = Table(  # every sign-off of a review (备案审查): who, verdict, reasons, the hash reviewed
    "agreement_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement_id", String(40), ForeignKey("agreements.id"), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("document_hash", String(80), nullable=False),
    Column("reviewer", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("reasons", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("reviewer_kind", String(32), nullable=True),  # a named reviewer's kind (migration 0021)
    CheckConstraint("verdict IN ('approve', 'refuse')", name="ck_agreement_reviews_verdict"),
)

agreement_signatures = Table(  # each co-owner's signature of its part of a version (multi-owner agreements)
    "agreement_signatures",
    metadata,
    Column("agreement_id", String(40), ForeignKey("agreements.id"), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document_hash", String(80), nullable=False),
    Column("datasets_json", Text, nullable=False),
    Column("signed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("agreement_id", "owner", "version"),
)

rectification_orders = Table(  # rectification orders (整改) the authority issues on an agreement
    "rectification_orders",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agreement_id", String(40), ForeignKey("agreements.id"), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("deadline", UTCDateTime, nullable=False),
    Column("opened_by", String(64), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("closed_by", String(64), nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("closing_note", Text, nullable=True),
)

complaints = Table(  # complaints and objections (投诉与异议, `policies.complaints`); subjects only as keyed hashes
    "complaints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("target_kind", String(16), nullable=False),
    Column("target", String(80), nullable=False),
    Column("agreement_id", String(40), nullable=True, index=True),
    Column("subject_hash", String(128), nullable=True, index=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("filer", String(64), nullable=False, index=True),
    Column("filer_role", String(16), nullable=False),
    Column("on_behalf", Boolean, nullable=False, default=False),
    Column("text", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("deadline", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("history_json", Text, nullable=False),
    CheckConstraint(_in("kind", ("complaint", "objection")), name="ck_complaints_kind"),
    CheckConstraint(_in("target_kind", ("agreement", "job", "output", "subject")), name="ck_complaints_target_kind"),
    CheckConstraint(_in("state", ("open", "investigating", "resolved", "rejected")), name="ck_complaints_state"),
)

negative_list = Table(
    "negative_list",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("value", String(160), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("kind", "value", name="uq_negative_list_kind_value"),
    CheckConstraint(_in("kind", ("column", "purpose", "dataset")), name="ck_negative_list_kind"),
)

# One privacy-budget account per (agreement, dataset): the allowance and what has been spent of it.
budget_accounts = Table(
    "budget_accounts",
    metadata,
    Column("agreement_id", String(40), ForeignKey("agreements.id"), nullable=False),
    Column("dataset", String(63), nullable=False),
    Column("epsilon_total", String(EXACT), nullable=False),
    Column("delta_total", String(EXACT), nullable=False),
    Column("epsilon_spent", String(EXACT), nullable=False),
    Column("delta_spent", String(EXACT), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("agreement_id", "dataset"),
)

# The append-only journal of the ledger: at most one debit and one refund per (job, dataset).
budget_entries = Table(
    "budget_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement_id", String(40), nullable=False),
    Column("dataset", String(63), nullable=False),
    Column("job_id", String(64), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("epsilon", String(EXACT), nullable=False),
    Column("delta", String(EXACT), nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    UniqueConstraint("job_id", "dataset", "kind", name="uq_budget_entries_job_dataset_kind"),
    CheckConstraint(_in("kind", ("debit", "refund")), name="ck_budget_entries_kind"),
    Index("ix_budget_entries_agreement_ts", "agreement_id", "ts"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agreement_id", String(40), ForeignKey("agreements.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("spec_hash", String(80), nullable=False),
    Column("fingerprints_json", Text, nullable=False),
    Column("columns_json", Text, nullable=False),
    Column("purpose", String(64), nullable=True),
    Column("inline", Boolean, nullable=False, default=False),
    Column("state", String(24), nullable=False),
    Column("created_by", String(64), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("approved_by", String(64), nullable=True),
    Column("approved_at", UTCDateTime, nullable=True),
    Column("rejected_reason", Text, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("cost_epsilon", String(EXACT), nullable=False),
    Column("cost_delta", String(EXACT), nullable=False),
    Column("worker_id", String(128), nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("result_json", Text, nullable=True),
    Column("result_ref", Text, nullable=True),
    Column("output_digest", String(80), nullable=True),
    Column("released_at", UTCDateTime, nullable=True),
    # The worker lease (`policies.jobs`): which process runs the job and until when its last heartbeat holds it.
    # NULL when no process holds the job (queued, awaiting the owner, finished).
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    CheckConstraint(_in("state", JOB_STATES), name="ck_jobs_state"),
    CheckConstraint(_in("kind", JOB_KINDS), name="ck_jobs_kind"),
    Index("ix_jobs_state_approved", "state", "approved_at"),
    Index("ix_jobs_state_lease", "state", "lease_expires_at"),
)

# What a job produced that is not (yet) its released result, written in the transaction of the job's state
# change (`policies.jobs.succeed`/`fail`/`release`): the output awaiting the owner's release (``kind`` and
# ``payload``, both NULL once released or refused) and the cause of a failure or incident, for the data owner
# only (``owner_detail``). JSON text, like ``jobs.result_json``.
job_outputs = Table(
    "job_outputs",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.id"), primary_key=True),
    Column("kind", String(16), nullable=True),
    Column("payload", Text, nullable=True),
    Column("owner_detail", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Usage counters. ``subject_hash`` is "" (not NULL) for counters without a subject, so the unique key
# (which treats NULLs as distinct) really is unique and increments are single conditional UPDATEs.
metering = Table(
    "metering",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agreement_id", String(40), nullable=False),
    Column("principal", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("day", String(10), nullable=False),
    Column("subject_hash", String(128), nullable=False, default=""),
    Column("count", Integer, nullable=False, default=0),
    UniqueConstraint("agreement_id", "principal", "kind", "day", "subject_hash", name="uq_metering_key"),
    Index("ix_metering_agreement_day", "agreement_id", "day"),
)

# Distinct verification parameter values per subject: the cap stops threshold binary search on one subject.
metering_params = Table(
    "metering_params",
    metadata,
    Column("agreement_id", String(40), nullable=False),
    Column("subject_hash", String(128), nullable=False),
    Column("param_hash", String(80), nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("agreement_id", "subject_hash", "param_hash"),
)

# The consent registry (同意登记, `policies.consent`): one row per recorded consent; subjects only as keyed hashes.
consents = Table(
    "consents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("subject_hash", String(128), nullable=False, index=True),
    Column("grantee", String(64), nullable=False, index=True),
    Column("scenario", Text, nullable=False),
    Column("products_json", Text, nullable=False),
    Column("valid_from", UTCDateTime, nullable=False),
    Column("valid_until", UTCDateTime, nullable=False),
    Column("recorded_by", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_by", String(64), nullable=True),
    Column("revoke_reason", Text, nullable=True),
)

# Trustee principals an owner authorises to record consents for that owner's datasets.
consent_trustees = Table(
    "consent_trustees",
    metadata,
    Column("owner", String(64), nullable=False),
    Column("trustee", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("owner", "trustee"),
)
