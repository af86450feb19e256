"""The Catalog: the system of record for applications, recovery points, clones and the audit trail.

Every method opens its own short session (SQLite writers use BEGIN IMMEDIATE) and returns frozen
dataclasses from `records` (never ORM rows). Datetimes in and out are timezone-aware UTC; naive
datetimes are refused with ValueError."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import ranges
from .clones import CloneStore
from .coltypes import as_utc, utcnow
from .errors import NotFound, OutOfRange
from .models import LOG_BACKUP_STATES, SNAPSHOT_STATES, ApplicationRow, AuditRow, LogBackupRow, SnapshotRow
from .ranges import Range
from .records import Application, AuditEntry, LogBackup, Snapshot
from .store import check_state


class Catalog(CloneStore):
    """Catalog(url=None, *, upgrade=True): $COPYDATA_CATALOG_URL, else SQLite at
    $COPYDATA_HOME/catalog.db; a PostgreSQL URL such as postgresql+psycopg://user@host/db works too.
    The schema is upgraded to head on open (idempotent, safe with concurrent openers)."""

    # -- applications ---------------------------------------------------------------------------

    def ensure_application(self, name: str, sla: str, engine: str, config: dict[str, Any] | None = None
                           ) -> Application:
        """Create or update the application (idempotent)."""
        def work(s: Session) -> Application:
            row = s.scalar(select(ApplicationRow).where(ApplicationRow.name == name))
            if row is None:
                row = ApplicationRow(name=name, sla=sla, engine=engine, config=dict(config or {}))
                s.add(row)
            else:
                row.sla, row.engine, row.config = sla, engine, dict(config or {})
            s.flush()
            return Application.of(row)
        return self._write_retrying(work)

    def application(self, name: str) -> Application:
        with self._read() as s:
            return Application.of(self._app_row(s, name))

    def applications(self) -> list[Application]:
        with self._read() as s:
            return [Application.of(r) for r in s.scalars(select(ApplicationRow).order_by(ApplicationRow.name))]

    # -- snapshots ------------------------------------------------------------------------------

    @staticmethod
    def _latest_log_row(s: Session, app_id: int) -> LogBackupRow | None:
        query = (select(LogBackupRow).where(LogBackupRow.application_id == app_id, LogBackupRow.state != "failed")
                 .order_by(LogBackupRow.id.desc()).limit(1))
        return s.scalar(query)

    def add_snapshot(self, app: str, pgroup_snapshot: str, volumes: dict[str, str], array: str,
                     started_at: datetime, consistent_at: datetime, engine_meta: dict[str, Any] | None = None,
                     *, kind: str = "full", retention_tags: Iterable[str] = ()) -> Snapshot:
        """Record a valid snapshot; a retry with the same (app, pgroup_snapshot) returns the existing row.
        Its chain is the chain of the application's latest log backup (0 before the first one)."""
        def work(s: Session) -> Snapshot:
            a = self._app_row(s, app)
            row = s.scalar(select(SnapshotRow).where(SnapshotRow.application_id == a.id,
                                                     SnapshotRow.pgroup_snapshot == pgroup_snapshot))
            if row is None:
                latest = self._latest_log_row(s, a.id)
                row = SnapshotRow(app=a, kind=kind, pgroup_snapshot=pgroup_snapshot, volumes=dict(volumes),
                                  array=array, started_at=as_utc(started_at), consistent_at=as_utc(consistent_at),
                                  engine_meta=dict(engine_meta or {}), state="valid",
                                  retention_tags=list(retention_tags), chain=latest.chain if latest else 0)
                s.add(row)
                s.flush()
            return Snapshot.of(row)
        return self._write_retrying(work)

    def snapshots(self, app: str, states: Iterable[str] | None = ("valid",)) -> list[Snapshot]:
        """The application's snapshots in these states (None: all), oldest consistent_at first."""
        with self._read() as s:
            query = select(SnapshotRow).where(SnapshotRow.application_id == self._app_row(s, app).id)
            if states is not None:
                query = query.where(SnapshotRow.state.in_(list(states)))
            rows = s.scalars(query.order_by(SnapshotRow.consistent_at, SnapshotRow.id))
            return [Snapshot.of(r) for r in rows]

    def snapshot(self, snapshot_id: int) -> Snapshot:
        with self._read() as s:
            return Snapshot.of(self._get(s, SnapshotRow, snapshot_id))

    def set_snapshot_state(self, snapshot_id: int, state: str) -> Snapshot:
        with self._write() as s:
            row = self._get(s, SnapshotRow, snapshot_id)
            row.state = check_state(state, SNAPSHOT_STATES)
            if state == "deleted":
                row.deleted_at = row.deleted_at or utcnow()
            return Snapshot.of(row)

    def set_retention_tags(self, snapshot_id: int, tags: Iterable[str]) -> Snapshot:
        with self._write() as s:
            row = self._get(s, SnapshotRow, snapshot_id)
            row.retention_tags = sorted(set(tags))
            return Snapshot.of(row)

    # -- log backups ----------------------------------------------------------------------------

    def add_log_backup(self, app: str, pgroup_snapshot: str, volumes: dict[str, str], covered_from: datetime,
                       covered_to: datetime, start_position: str | None = None, end_position: str | None = None,
                       start_segment: str | None = None, end_segment: str | None = None,
                       continuous: bool = True, engine_meta: dict[str, Any] | None = None) -> LogBackup:
        """Record a valid log backup; idempotent on (app, pgroup_snapshot). Its chain is the previous log
        backup's chain, plus one when `continuous` is False (the archive lost continuity)."""
        if as_utc(covered_from) > as_utc(covered_to):
            raise ValueError(f"covered_from {covered_from.isoformat()} is after covered_to {covered_to.isoformat()}")

        def work(s: Session) -> LogBackup:
            a = self._app_row(s, app)
            row = s.scalar(select(LogBackupRow).where(LogBackupRow.application_id == a.id,
                                                      LogBackupRow.pgroup_snapshot == pgroup_snapshot))
            if row is None:
                latest = self._latest_log_row(s, a.id)
                chain = (latest.chain if latest else 0) + (0 if continuous else 1)
                row = LogBackupRow(app=a, pgroup_snapshot=pgroup_snapshot, volumes=dict(volumes),
                                   covered_from=as_utc(covered_from), covered_to=as_utc(covered_to),
                                   start_position=start_position, end_position=end_position,
                                   start_segment=start_segment, end_segment=end_segment, chain=chain,
                                   engine_meta=dict(engine_meta or {}), state="valid")
                s.add(row)
                s.flush()
            return LogBackup.of(row)
        return self._write_retrying(work)

    def log_backups(self, app: str, states: Iterable[str] | None = ("valid",)) -> list[LogBackup]:
        """The application's log backups in these states (None: all), oldest covered_to first."""
        with self._read() as s:
            query = select(LogBackupRow).where(LogBackupRow.application_id == self._app_row(s, app).id)
            if states is not None:
                query = query.where(LogBackupRow.state.in_(list(states)))
            rows = s.scalars(query.order_by(LogBackupRow.covered_to, LogBackupRow.id))
            return [LogBackup.of(r) for r in rows]

    def log_backup(self, log_backup_id: int) -> LogBackup:
        with self._read() as s:
            return LogBackup.of(self._get(s, LogBackupRow, log_backup_id))

    def set_log_backup_state(self, log_backup_id: int, state: str) -> LogBackup:
        with self._write() as s:
            row = self._get(s, LogBackupRow, log_backup_id)
            row.state = check_state(state, LOG_BACKUP_STATES)
            return LogBackup.of(row)

    # -- recovery points ------------------------------------------------------------------------

    def _history(self, app: str) -> tuple[list[Snapshot], list[LogBackup]]:
        """Valid snapshots and log backups, read in one transaction."""
        with self._read() as s:
            app_id = self._app_row(s, app).id
            snaps = s.scalars(select(SnapshotRow).where(SnapshotRow.application_id == app_id,
                                                        SnapshotRow.state == "valid")
                              .order_by(SnapshotRow.consistent_at, SnapshotRow.id))
            logs = s.scalars(select(LogBackupRow).where(LogBackupRow.application_id == app_id,
                                                        LogBackupRow.state == "valid")
                             .order_by(LogBackupRow.covered_to, LogBackupRow.id))
            return [Snapshot.of(r) for r in snaps], [LogBackup.of(r) for r in logs]

    def recoverable_ranges(self, app: str) -> list[Range]:
        return ranges.recoverable(*self._history(app))

    def points(self, app: str) -> dict[str, Any]:
        """Summary for `copydata points`: earliest/latest whole second, ranges, gaps and counts."""
        snaps, logs = self._history(app)
        return ranges.points(app, ranges.recoverable(snaps, logs), len(snaps), len(logs))

    def snapshot_for(self, app: str, target: datetime | None = None) -> Snapshot:
        """The newest valid snapshot with consistent_at <= target whose log chain reaches target
        (target None: the newest valid snapshot). Raises OutOfRange with the recoverable ranges."""
        snaps, logs = self._history(app)
        if target is None:
            if snaps:
                return snaps[-1]
            raise OutOfRange(app, None, [])
        target = as_utc(target)
        for snap in reversed(snaps):
            if target in ranges.snapshot_range(snap, logs):
                return snap
        raise OutOfRange(app, target, ranges.recoverable(snaps, logs))

    def log_backup_for(self, app: str, snapshot: Snapshot, target: datetime | None = None) -> LogBackup | None:
        """The log backup to roll `snapshot` forward to `target`: the one of the snapshot's chain with the
        smallest covered_to >= target. target None (latest): the chain's newest. None when no log backup
        is needed (target == consistent_at) or, for target None, none exists. OutOfRange if unreachable."""
        snaps, logs = self._history(app)
        usable = ranges.usable_logs(snapshot, logs)
        if target is None:
            return usable[-1] if usable else None
        target = as_utc(target)
        if target >= snapshot.consistent_at:
            fit = [lb for lb in usable if lb.covered_to >= target]
            if fit or target == snapshot.consistent_at:
                return fit[0] if fit else None
        raise OutOfRange(app, target, ranges.recoverable(snaps, logs))

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, application: str | None = None, target: str | None = None,
              details: dict[str, Any] | None = None) -> AuditEntry:
        with self._write() as s:
            row = AuditRow(at=utcnow(), actor=actor, action=action, application=application, target=target,
                           details=dict(details or {}))
            s.add(row)
            s.flush()
            return AuditEntry.of(row)

    def retire_application(self, name: str) -> int:
        """Its volumes are gone: mark its snapshots and log backups deleted, so a new application of the same
        name starts from nothing. Returns how many rows changed; unknown names change nothing."""
        try:
            self.application(name)
        except NotFound:
            return 0
        changed = 0
        for snap in self.snapshots(name, states=("valid", "expired", "failed")):
            self.set_snapshot_state(snap.id, "deleted")
            changed += 1
        for lb in self.log_backups(name, states=("valid", "expired", "failed")):
            self.set_log_backup_state(lb.id, "deleted")
            changed += 1
        return changed

    def audit_log(self, application: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first (of one application, or all)."""
        with self._read() as s:
            query = select(AuditRow)
            if application is not None:
                query = query.where(AuditRow.application == application)
            rows = s.scalars(query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit))
            return [AuditEntry.of(r) for r in rows]
