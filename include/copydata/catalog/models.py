"""ORM models of the catalog tables (SQLAlchemy 2, typed). The schema itself is owned by the migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .coltypes import UTCDateTime, utcnow

SNAPSHOT_STATES = ("valid", "expired", "deleting", "deleted", "failed")
LOG_BACKUP_STATES = SNAPSHOT_STATES
CLONE_STATES = ("creating", "running", "stopped", "refreshing", "failed", "deleted")
LIVE_CLONE_STATES = tuple(s for s in CLONE_STATES if s != "deleted")

Json = dict[str, Any]


class Base(DeclarativeBase):
    pass


class ApplicationRow(Base):
    __tablename__ = "applications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    sla: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(32))
    config: Mapped[Json] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SnapshotRow(Base):
    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("application_id", "pgroup_snapshot", name="uq_snapshots_app_pgsnap"),
                      Index("ix_snapshots_app_consistent", "application_id", "consistent_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    kind: Mapped[str] = mapped_column(String(16), default="full")
    pgroup_snapshot: Mapped[str] = mapped_column(String(255))
    volumes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    array: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consistent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    engine_meta: Mapped[Json] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="valid")
    retention_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    chain: Mapped[int] = mapped_column(Integer, default=0)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    app: Mapped[ApplicationRow] = relationship(lazy="joined", innerjoin=True)


class LogBackupRow(Base):
    __tablename__ = "log_backups"
    __table_args__ = (UniqueConstraint("application_id", "pgroup_snapshot", name="uq_log_backups_app_pgsnap"),
                      Index("ix_log_backups_app_chain", "application_id", "chain"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    pgroup_snapshot: Mapped[str] = mapped_column(String(255))
    volumes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    covered_from: Mapped[datetime] = mapped_column(UTCDateTime)
    covered_to: Mapped[datetime] = mapped_column(UTCDateTime)
    start_position: Mapped[str | None] = mapped_column(Text)
    end_position: Mapped[str | None] = mapped_column(Text)
    start_segment: Mapped[str | None] = mapped_column(Text)
    end_segment: Mapped[str | None] = mapped_column(Text)
    chain: Mapped[int] = mapped_column(Integer, default=0)
    engine_meta: Mapped[Json] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="valid")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    app: Mapped[ApplicationRow] = relationship(lazy="joined", innerjoin=True)


class CloneRow(Base):
    __tablename__ = "clones"
    __table_args__ = (Index("uq_clones_live_name", "name", unique=True,
                            sqlite_where=text("state != 'deleted'"),
                            postgresql_where=text("state != 'deleted'")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    name: Mapped[str] = mapped_column(String(128))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    log_backup_id: Mapped[int | None] = mapped_column(ForeignKey("log_backups.id"))
    point_in_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner: Mapped[str] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="creating")
    volumes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    mounts: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    details: Mapped[Json] = mapped_column(JSON, default=dict)

    app: Mapped[ApplicationRow] = relationship(lazy="joined", innerjoin=True)


class AuditRow(Base):
    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_app_at", "application", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    application: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[Json] = mapped_column(JSON, default=dict)
