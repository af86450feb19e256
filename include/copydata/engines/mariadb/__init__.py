"""MariaDB 10.11+ engine (MySQL 8.0 / 8.4 through the same code, flavour detected at run time)."""

from .engine import ARCHIVE_SUBDIR, MariaDbEngine, QuiesceLost
from .server import RecoveryFailed

__all__ = ["ARCHIVE_SUBDIR", "MariaDbEngine", "QuiesceLost", "RecoveryFailed"]
