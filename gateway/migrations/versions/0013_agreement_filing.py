"""agreement filing (备案): the review states, filing numbers, sign-offs and rectification orders (整改)

``agreements`` gains ``filing_required`` (acceptance leads to review and filing), ``filing_number`` (unique,
``BA-<year>-<six digits>``), ``filed_at``, ``suspended_by`` (owner or authority) and ``migration_noted``, and its
state may now also be ``accepted``, ``under_review``, ``returned`` or ``filed``. ``agreement_reviews`` keeps every
sign-off (reviewer, verdict, reasons, the document hash reviewed); ``rectification_orders`` the authority's orders.

Agreements in force before filing existed (active or suspended) are filed by this upgrade: each gets a number and
``filed_at``, keeps its state, and ``migration_noted`` false until the gateway writes its ``agreement.migrate``
audit entry (`gateway.services.agreements.note_migrations`: Alembic sees the database, not the signing key).

Revision ID: 0013_agreement_filing
Revises: 0002 (its own branch: it changes only the policies tables)
Create Date: 2026-12-03
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_agreement_filing"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("proposed", "active", "suspended", "revoked")
_NEW = ("proposed", "accepted", "under_review", "returned", "filed", "active", "suspended", "revoked")


def _in(values: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("agreements", recreate="auto") as b:
        b.drop_constraint("ck_agreements_state", type_="check")
        b.create_check_constraint("ck_agreements_state", _in(_NEW))
        b.add_column(sa.Column("filing_required", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("filing_number", sa.String(length=24), nullable=True))
        b.add_column(sa.Column("filed_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("suspended_by", sa.String(length=16), nullable=True))
        b.add_column(sa.Column("migration_noted", sa.Boolean(), nullable=False, server_default=sa.true()))
        b.create_unique_constraint("uq_agreements_filing_number", ["filing_number"])
    op.create_table(
        "agreement_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agreement_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document_hash", sa.String(length=80), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("verdict IN ('approve', 'refuse')", name="ck_agreement_reviews_verdict"),
        sa.ForeignKeyConstraint(["agreement_id"], ["agreements.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_agreement_reviews_agreement_id"), "agreement_reviews", ["agreement_id"], unique=False)
    op.create_table(
        "rectification_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agreement_id", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closing_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["agreement_id"], ["agreements.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_rectification_orders_agreement_id"), "rectification_orders", ["agreement_id"],
                    unique=False)
    _file_agreements_in_force()


def _file_agreements_in_force() -> None:
    """Agreements active or suspended before filing existed are filed now, numbered in order of acceptance."""
    conn = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    ag = sa.table("agreements", sa.column("id"), sa.column("state"), sa.column("accepted_at"),
                  sa.column("created_at"), sa.column("filing_number"), sa.column("filed_at"),
                  sa.column("migration_noted"))
    ids = conn.execute(sa.select(ag.c.id).where(ag.c.state.in_(("active", "suspended")))
                       .order_by(ag.c.accepted_at, ag.c.created_at, ag.c.id)).scalars().all()
    for n, agreement_id in enumerate(ids, start=1):
        conn.execute(sa.update(ag).where(ag.c.id == agreement_id).values(
            filing_number=f"BA-{now.year}-{n:06d}", filed_at=now, migration_noted=False))


def downgrade() -> None:
    op.drop_index(op.f("ix_rectification_orders_agreement_id"), table_name="rectification_orders")
    op.drop_table("rectification_orders")
    op.drop_index(op.f("ix_agreement_reviews_agreement_id"), table_name="agreement_reviews")
    op.drop_table("agreement_reviews")
    conn = op.get_bind()  # the review states do not exist below 0013: such agreements go back to proposed
    conn.execute(sa.text("UPDATE agreements SET state = 'proposed' WHERE state IN "
                         "('accepted', 'under_review', 'returned')"))
    conn.execute(sa.text("UPDATE agreements SET state = 'active' WHERE state = 'filed'"))
    with op.batch_alter_table("agreements", recreate="auto") as b:
        b.drop_constraint("uq_agreements_filing_number", type_="unique")
        b.drop_column("migration_noted")
        b.drop_column("suspended_by")
        b.drop_column("filed_at")
        b.drop_column("filing_number")
        b.drop_column("filing_required")
        b.drop_constraint("ck_agreements_state", type_="check")
        b.create_check_constraint("ck_agreements_state", _in(_OLD))
