"""alerts (监测预警): the alerts the worker raised, the admins' webhooks and each alert's deliveries

``alerts``: one row per condition (its ``condition_key`` unique, so a restart or a second worker never raises it
again), its rule, severity, the owner it concerns, what it names (agreement, dataset, principal, a subject only as
its keyed hash), the window and count, and who acknowledged it. ``alert_webhooks``: an admin's webhook URL per
subscriber (its HMAC secret is a keyring secret). ``alert_deliveries``: one alert to one webhook, with its
attempts, next attempt and state (`gateway.services.alerts`). An index on ``audit_entries.ts``: the rules read the
audit log by time window.

Revision ID: 0017_alerts
Revises: 0001 (its own branch: the tables depend on no other migration)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_alerts"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("condition_key", sa.String(length=300), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("agreement_id", sa.String(length=40), nullable=True),
        sa.Column("dataset", sa.String(length=63), nullable=True),
        sa.Column("principal", sa.String(length=64), nullable=True),
        sa.Column("subject_hash", sa.String(length=128), nullable=True),
        sa.Column("window_start", sa.Float(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("acked_at", sa.Float(), nullable=True),
        sa.Column("acked_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("condition_key"),
    )
    op.create_index("ix_alerts_rule", "alerts", ["rule"])
    op.create_index("ix_alerts_owner", "alerts", ["owner"])
    op.create_table(
        "alert_webhooks",
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subscriber"),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("alert_id", sa.String(length=40), nullable=False),
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", "subscriber"),
    )
    op.create_index("ix_alert_deliveries_state", "alert_deliveries", ["state"])
    op.create_index("ix_alert_deliveries_next_attempt_at", "alert_deliveries", ["next_attempt_at"])
    op.create_index("ix_audit_entries_ts", "audit_entries", ["ts"])  # the rules read the log by time window


def downgrade() -> None:
    op.drop_index("ix_audit_entries_ts", table_name="audit_entries")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_webhooks")
    op.drop_table("alerts")
