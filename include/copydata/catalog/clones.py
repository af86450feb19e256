"""Clone bookkeeping: the clones table and which clones depend on a snapshot or log backup."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .coltypes import utcnow
from .errors import Conflict, NotFound
from .models import LIVE_CLONE_STATES, CloneRow, SnapshotRow
from .records import Clone
from .store import Store, check_state, opt_utc

CLONE_FIELDS = frozenset({"snapshot_id", "log_backup_id", "point_in_time", "owner", "host", "port", "state",
                          "volumes", "mounts", "refreshed_at", "expires_at", "details"})
TIME_FIELDS = frozenset({"point_in_time", "refreshed_at", "expires_at"})


class CloneStore(Store):
    """Clones: one live (non-deleted) clone per name; deleted rows are kept for the record."""

    @staticmethod
    def _live_clone(s: Session, name: str) -> CloneRow | None:
        return s.scalar(select(CloneRow).where(CloneRow.name == name, CloneRow.state != "deleted"))

    def _live_clone_names(self, condition: Any) -> list[str]:
        with self._read() as s:
            query = select(CloneRow.name).where(condition, CloneRow.state != "deleted").order_by(CloneRow.name)
            return list(s.scalars(query))

    def add_clone(self, app: str, name: str, snapshot_id: int, owner: str, *, log_backup_id: int | None = None,
                  point_in_time: datetime | None = None, host: str | None = None, port: int | None = None,
                  state: str = "creating", volumes: dict[str, str] | None = None,
                  mounts: dict[str, str] | None = None, expires_at: datetime | None = None,
                  details: dict[str, Any] | None = None) -> Clone:
        """Record a clone. A retry (same live name, application, snapshot and point in time) returns the
        existing row; another live clone of that name raises Conflict."""
        pit = opt_utc(point_in_time)

        def work(s: Session) -> Clone:
            a = self._app_row(s, app)
            if self._get(s, SnapshotRow, snapshot_id).application_id != a.id:
                raise Conflict(f"snapshot {snapshot_id} does not belong to {app!r}")
            row = self._live_clone(s, name)
            if row is not None:
                if (row.application_id, row.snapshot_id, row.point_in_time) != (a.id, snapshot_id, pit):
                    raise Conflict(f"clone {name!r} exists already (snapshot {row.snapshot_id}, {row.state})")
                return Clone.of(row)
            row = CloneRow(app=a, name=name, snapshot_id=snapshot_id, log_backup_id=log_backup_id,
                           point_in_time=pit, owner=owner, host=host, port=port,
                           state=check_state(state, LIVE_CLONE_STATES), volumes=dict(volumes or {}),
                           mounts=dict(mounts or {}), expires_at=opt_utc(expires_at), details=dict(details or {}))
            s.add(row)
            s.flush()
            return Clone.of(row)
        return self._write_retrying(work)

    def _live_clone_or_fail(self, s: Session, name: str) -> CloneRow:
        row = self._live_clone(s, name)
        if row is None:
            raise NotFound(f"no clone {name!r} in the catalog")
        return row

    def clone(self, name: str) -> Clone:
        """The live (non-deleted) clone of that name."""
        with self._read() as s:
            return Clone.of(self._live_clone_or_fail(s, name))

    def find_clone(self, name: str) -> Clone | None:
        """The live clone of that name, or None."""
        with self._read() as s:
            row = self._live_clone(s, name)
            return None if row is None else Clone.of(row)

    def upsert_clone(self, name: str, app: str, **fields: Any) -> Clone:
        """add_clone(app, name, **fields) when no live clone has that name, else update_clone(name, **fields)
        (re-using a half-created or failed clone on a retry)."""
        if self.find_clone(name) is None:
            try:
                return self.add_clone(app, name, **fields)
            except Conflict:
                if self.find_clone(name) is None:
                    raise
        return self.update_clone(name, **fields)  # it exists, or a concurrent creator just won

    def clones(self, app: str | None = None, states: Iterable[str] | None = LIVE_CLONE_STATES) -> list[Clone]:
        """Clones (of one application, or all) in these states (None: all, deleted included)."""
        with self._read() as s:
            query = select(CloneRow)
            if app is not None:
                query = query.where(CloneRow.application_id == self._app_row(s, app).id)
            if states is not None:
                query = query.where(CloneRow.state.in_(list(states)))
            return [Clone.of(r) for r in s.scalars(query.order_by(CloneRow.created_at, CloneRow.id))]

    def update_clone(self, name: str, **fields: Any) -> Clone:
        """Change fields of the live clone (see CLONE_FIELDS); use delete_clone() to delete it."""
        unknown = set(fields) - CLONE_FIELDS
        if unknown:
            raise TypeError(f"update_clone: unknown field(s) {', '.join(sorted(unknown))}")
        if "state" in fields:
            check_state(fields["state"], LIVE_CLONE_STATES)
        with self._write() as s:
            row = self._live_clone_or_fail(s, name)
            for key, value in fields.items():
                setattr(row, key, opt_utc(value) if key in TIME_FIELDS else value)
            s.flush()
            return Clone.of(row)

    def delete_clone(self, name: str) -> Clone:
        """Mark the live clone deleted (the row stays, its name becomes free)."""
        with self._write() as s:
            row = self._live_clone_or_fail(s, name)
            row.state, row.deleted_at = "deleted", utcnow()
            s.flush()
            return Clone.of(row)

    def dependents(self, snapshot_id: int) -> list[str]:
        """Names of the non-deleted clones built on this snapshot."""
        return self._live_clone_names(CloneRow.snapshot_id == snapshot_id)

    def log_backup_dependents(self, log_backup_id: int) -> list[str]:
        """Names of the non-deleted clones recovered with this log backup."""
        return self._live_clone_names(CloneRow.log_backup_id == log_backup_id)
