"""PostgreSQL 15+ engine."""

from .engine import ARCHIVE_SUBDIR, PostgresEngine, RecoveryFailed

__all__ = ["ARCHIVE_SUBDIR", "PostgresEngine", "RecoveryFailed"]
