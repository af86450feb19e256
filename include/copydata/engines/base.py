"""The engine contract: what copydata asks of each database engine.

Modelled on Delphix's plugin contract: quiesce/unquiesce around the array snapshot,
log backup, recovery to a target, and clone personalisation. Orchestration (array
calls, catalog, mounts) lives in copydata.ops and is the same for every engine.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DbTarget:
    """How to reach a database server. Secrets stay here, never in logs (see __repr__)."""

    host: str  # host name, or the Unix socket folder
    port: int
    user: str
    password: str | None = None
    database: str | None = None

    def __repr__(self) -> str:
        return f"DbTarget(host={self.host!r}, port={self.port}, user={self.user!r}, database={self.database!r})"


@dataclass
class FreezeResult:
    """Filled in by Engine.quiesce: when the window opened and closed, and what the engine reported."""

    started_at: dt.datetime | None = None
    frozen_at: dt.datetime | None = None
    thawed_at: dt.datetime | None = None
    consistent_at: dt.datetime | None = None
    meta: dict = field(default_factory=dict)

    @property
    def window_seconds(self) -> float | None:
        if self.frozen_at and self.thawed_at:
            return (self.thawed_at - self.frozen_at).total_seconds()
        return None


@dataclass(frozen=True)
class LogPosition:
    """The result of pushing the latest commits into the log archive."""

    covered_to: dt.datetime  # every commit at or before this instant is archived, and one after it too
    end_position: str  # LSN, binlog file:pos, ...
    end_segment: str  # last archived WAL segment / binlog file
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ArchiveCheck:
    start_segment: str | None
    end_segment: str | None
    continuous: bool
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CloneSpec:
    """Everything an engine needs to turn a mounted snapshot copy into a running database."""

    name: str
    data_mount: Path
    log_mount: Path | None
    port: int
    target: dt.datetime | None  # None: recover everything the logs hold
    snapshot_meta: dict
    run_dir: Path  # sockets, logs and pid files of the clone
    in_place: bool = False  # restore in place: keep the server's own port, sockets and archiving
    # The command that fetches a log (PostgreSQL: restore_command, %f and %p as usual); None = the engine's
    # own copy from log_mount. MariaDB replays binary logs from log_mount and refuses one that is set.
    restore_command: str | None = None


class Engine(abc.ABC):
    name: str

    @abc.abstractmethod
    def quiesce(self, label: str, timeout: float) -> contextlib.AbstractContextManager[FreezeResult]:
        """Make the database's storage image recoverable for the duration of the block; always undo it."""

    @abc.abstractmethod
    def push_logs(self, timeout: float) -> LogPosition:
        """Commit a heartbeat, close the current log and wait until the archive holds it."""

    @abc.abstractmethod
    def check_archive(self, log_mount: Path, since_segment: str | None) -> ArchiveCheck:
        """Is the log archive on this mount continuous from since_segment to its end?"""

    @abc.abstractmethod
    def prepare_clone(self, spec: CloneSpec) -> None:
        """Write the recovery configuration into the mounted copy (before the first start)."""

    @abc.abstractmethod
    def start(self, spec: CloneSpec, timeout: float) -> DbTarget:
        """Start the server on the copy and wait until recovery has truly ended."""

    @abc.abstractmethod
    def stop(self, data_mount: Path, run_dir: Path | None = None) -> None:
        """Stop the server on this data mount, if it runs. Idempotent."""

    @abc.abstractmethod
    def mask(self, target: DbTarget, sql: str | None, script: str | None) -> None:
        """Run the masking SQL or script against a clone."""
