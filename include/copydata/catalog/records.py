"""What the catalog returns: frozen dataclasses, detached from any database session.

Rows never leave the catalog; every public method converts them with `of(row)`, so callers can keep,
compare and pass the results around (e.g. between Airflow tasks) without lazy loads or stale sessions."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

from .models import ApplicationRow, AuditRow, CloneRow, LogBackupRow, SnapshotRow


def _values(cls: type, row: Any, **override: Any) -> dict[str, Any]:
    return {f.name: override[f.name] if f.name in override else getattr(row, f.name) for f in fields(cls)}


@dataclass(frozen=True)
class Application:
    id: int
    name: str
    sla: str
    engine: str
    config: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: ApplicationRow) -> Self:
        return cls(**_values(cls, row))


@dataclass(frozen=True)
class Snapshot:
    id: int
    application: str
    kind: str
    pgroup_snapshot: str
    volumes: dict[str, str]
    array: str
    started_at: datetime
    consistent_at: datetime
    created_at: datetime
    engine_meta: dict[str, Any]
    state: str
    retention_tags: list[str]
    chain: int
    deleted_at: datetime | None

    @classmethod
    def of(cls, row: SnapshotRow) -> Self:
        return cls(**_values(cls, row, application=row.app.name))


@dataclass(frozen=True)
class LogBackup:
    id: int
    application: str
    pgroup_snapshot: str
    volumes: dict[str, str]
    covered_from: datetime
    covered_to: datetime
    start_position: str | None
    end_position: str | None
    start_segment: str | None
    end_segment: str | None
    chain: int
    engine_meta: dict[str, Any]
    state: str
    created_at: datetime

    @classmethod
    def of(cls, row: LogBackupRow) -> Self:
        return cls(**_values(cls, row, application=row.app.name))


@dataclass(frozen=True)
class Clone:
    id: int
    application: str
    name: str
    snapshot_id: int
    log_backup_id: int | None
    point_in_time: datetime | None
    owner: str
    host: str | None
    port: int | None
    state: str
    volumes: dict[str, str]
    mounts: dict[str, str]
    created_at: datetime
    refreshed_at: datetime | None
    expires_at: datetime | None
    deleted_at: datetime | None
    details: dict[str, Any]

    @classmethod
    def of(cls, row: CloneRow) -> Self:
        return cls(**_values(cls, row, application=row.app.name))


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    application: str | None
    target: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, row: AuditRow) -> Self:
        return cls(**_values(cls, row))
