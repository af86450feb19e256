"""Initial catalog: applications, snapshots, log backups, clones, audit.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def _applications() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("sla", sa.String(64), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
    )


def _snapshots() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("application_id", sa.Integer, sa.ForeignKey("applications.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pgroup_snapshot", sa.String(255), nullable=False),
        sa.Column("volumes", sa.JSON, nullable=False),
        sa.Column("array", sa.String(255), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("consistent_at", UTC_TIME, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("engine_meta", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("retention_tags", sa.JSON, nullable=False),
        sa.Column("chain", sa.Integer, nullable=False),
        sa.Column("deleted_at", UTC_TIME, nullable=True),
        sa.UniqueConstraint("application_id", "pgroup_snapshot", name="uq_snapshots_app_pgsnap"),
    )
    op.create_index("ix_snapshots_app_consistent", "snapshots", ["application_id", "consistent_at"])


def _log_backups() -> None:
    op.create_table(
        "log_backups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("application_id", sa.Integer, sa.ForeignKey("applications.id"), nullable=False),
        sa.Column("pgroup_snapshot", sa.String(255), nullable=False),
        sa.Column("volumes", sa.JSON, nullable=False),
        sa.Column("covered_from", UTC_TIME, nullable=False),
        sa.Column("covered_to", UTC_TIME, nullable=False),
        sa.Column("start_position", sa.Text, nullable=True),
        sa.Column("end_position", sa.Text, nullable=True),
        sa.Column("start_segment", sa.Text, nullable=True),
        sa.Column("end_segment", sa.Text, nullable=True),
        sa.Column("chain", sa.Integer, nullable=False),
        sa.Column("engine_meta", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.UniqueConstraint("application_id", "pgroup_snapshot", name="uq_log_backups_app_pgsnap"),
    )
    op.create_index("ix_log_backups_app_chain", "log_backups", ["application_id", "chain"])


def _clones() -> None:
    op.create_table(
        "clones",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("application_id", sa.Integer, sa.ForeignKey("applications.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=False),
        sa.Column("log_backup_id", sa.Integer, sa.ForeignKey("log_backups.id"), nullable=True),
        sa.Column("point_in_time", UTC_TIME, nullable=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("volumes", sa.JSON, nullable=False),
        sa.Column("mounts", sa.JSON, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("refreshed_at", UTC_TIME, nullable=True),
        sa.Column("expires_at", UTC_TIME, nullable=True),
        sa.Column("deleted_at", UTC_TIME, nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_clones_snapshot_id", "clones", ["snapshot_id"])
    live = sa.text("state != 'deleted'")
    op.create_index("uq_clones_live_name", "clones", ["name"], unique=True,
                    sqlite_where=live, postgresql_where=live)


def _audit() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("application", sa.String(64), nullable=True),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_app_at", "audit", ["application", "at"])


def upgrade() -> None:
    _applications()
    _snapshots()
    _log_backups()
    _clones()
    _audit()


def downgrade() -> None:
    for table in ("audit", "clones", "log_backups", "snapshots", "applications"):
        op.drop_table(table)
