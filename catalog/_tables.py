"""Metadata tables owned by the catalog. Migrations live with the gateway, which composes all packages."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text, false

metadata = MetaData()

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("description", Text, nullable=False, default=""),
    Column("grade", String(16), nullable=False),
    Column("personal", Boolean, nullable=False),
    Column("sensitive", Boolean, nullable=False),
    Column("columns_json", Text, nullable=False),
    Column("max_rows_per_unit", Integer, nullable=False),
    Column("fingerprint", String(80), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    Column("ingest_report_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # withdrawal (migration 0015): ``registered`` or ``withdrawn`` (the record is kept for good); when and why the
    # owner withdrew it, and when its copy was disposed of (data key destroyed, sealed file deleted)
    Column("state", String(16), nullable=False, default="registered", server_default="registered"),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Column("withdrawn_reason", Text, nullable=True),
    Column("disposed_at", DateTime(timezone=True), nullable=True),
)

# Verification products (核验): an owner's predicate template over one row of a dataset, keyed by a subject
# column (catalog.products). The predicate is stored as written; it is vetted by the sandbox at definition and
# again at every check.
verification_products = Table(
    "verification_products",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("dataset", String(63), nullable=False, index=True),
    Column("subject_column", String(63), nullable=False),
    Column("predicate", Text, nullable=False),
    Column("params_json", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("dataset_fingerprint", String(80), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # refuse predicates whose verdict is the membership bit (sandbox.verify_membership); migration 0007
    Column("hide_membership", Boolean, nullable=False, server_default=false()),
)

# Scores exposed by encrypted scoring, per (agreement, model): the model-extraction meter (catalog.models).
model_score_usage = Table(
    "model_score_usage",
    metadata,
    Column("agreement_id", String(64), primary_key=True),
    Column("model_id", String(40), primary_key=True),
    Column("scores", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The certificate registry of verification products and released outputs, with their source attribution and
# revocation (catalog.certificates); migration 0018.
certificates = Table(
    "certificates",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subject", String(64), nullable=False),  # the product's name or the released job's id
    Column("agreement_id", String(64), nullable=True, index=True),
    Column("owner", String(64), nullable=False, index=True),  # the data owner who issues it
    Column("holder", String(64), nullable=True),  # the grantee an output was released to
    Column("covers_json", Text, nullable=False),
    Column("sources_json", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # one product certificate per product and agreement (its own: agreement_id null); migration 0022
    Index("ix_certificates_kind_subject_agreement", "kind", "subject", "agreement_id", unique=True),
)
