"""The catalog: system of record for recovery points (snapshots, log backups), clones and the audit trail.

SQLAlchemy 2 + Alembic; SQLite ($COPYDATA_HOME/catalog.db) by default, PostgreSQL by URL. No Airflow here.
See docs/catalog.md."""

from .catalog import Catalog
from .errors import CatalogError, Conflict, NotFound, OutOfRange
from .models import CLONE_STATES, LIVE_CLONE_STATES, LOG_BACKUP_STATES, SNAPSHOT_STATES
from .ranges import Range
from .records import Application, AuditEntry, Clone, LogBackup, Snapshot

__all__ = [
    "CLONE_STATES",
    "LIVE_CLONE_STATES",
    "LOG_BACKUP_STATES",
    "SNAPSHOT_STATES",
    "Application",
    "AuditEntry",
    "Catalog",
    "CatalogError",
    "Clone",
    "Conflict",
    "LogBackup",
    "NotFound",
    "OutOfRange",
    "Range",
    "Snapshot",
]
