"""PostgreSQL 15+: pg_backup_start/stop around the snapshot, WAL archive as the log, PITR by replay."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from ... import sysutil
from ..base import ArchiveCheck, CloneSpec, DbTarget, Engine, FreezeResult, LogPosition
from . import wal

log = logging.getLogger(__name__)
ARCHIVE_SUBDIR = "wal"
CONF_BEGIN, CONF_END = "# --- copydata clone settings (begin) ---", "# --- copydata clone settings (end) ---"


class RecoveryFailed(RuntimeError):
    pass


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def connect(db: DbTarget, timeout: float = 10) -> psycopg.Connection:
    return psycopg.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                           dbname=db.database or "postgres", connect_timeout=max(1, int(timeout)),
                           autocommit=True, keepalives=1, keepalives_idle=10, keepalives_interval=5,
                           keepalives_count=3)


def find_bin_dir() -> Path:
    for version in ("17", "16", "15"):
        path = Path(f"/usr/lib/postgresql/{version}/bin")
        if (path / "pg_ctl").exists():
            return path
    raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")


class PostgresEngine(Engine):
    name = "postgresql"

    def __init__(self, db: DbTarget | None = None, data_directory: str = "pgdata", os_user: str = "postgres",
                 bin_dir: Path | None = None):
        self.db = db
        self.data_directory = data_directory
        self.os_user = os_user
        self.bin_dir = bin_dir or find_bin_dir()

    # -- snapshots -------------------------------------------------------------------------
    @contextlib.contextmanager
    def quiesce(self, label: str, timeout: float) -> Iterator[FreezeResult]:
        """pg_backup_start ... pg_backup_stop in one session; the stop always runs."""
        res = FreezeResult(started_at=utcnow())
        with connect(self.db, timeout) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            start_lsn = conn.execute("SELECT pg_backup_start(%s, true)", [label]).fetchone()[0]
            res.frozen_at = utcnow()
            res.meta["start_lsn"] = str(start_lsn)
            ok = False
            try:
                yield res
                ok = True
            finally:
                self._backup_stop(conn, res)
            if ok:  # outside the window: the snapshot needs the WAL up to the stop point archived
                self._wait_archived(conn, res.meta["stop_segment"], timeout)

    @staticmethod
    def _backup_stop(conn: psycopg.Connection, res: FreezeResult) -> None:
        """End backup mode at once; pg_backup_stop's own archive wait polls only once a second."""
        row = conn.execute("SELECT lsn, labelfile, spcmapfile, pg_walfile_name(lsn), clock_timestamp(), "
                           "timeline_id FROM pg_backup_stop(false), pg_control_checkpoint()").fetchone()
        res.thawed_at = utcnow()
        lsn, labelfile, spcmap, segment, server_now, timeline = row
        res.consistent_at = server_now
        res.meta.update({"stop_lsn": str(lsn), "backup_label": labelfile, "tablespace_map": spcmap or "",
                         "stop_segment": segment, "timeline": timeline,
                         "start_segment": wal.label_start_segment(labelfile)})

    # -- logs ------------------------------------------------------------------------------
    def push_logs(self, timeout: float) -> LogPosition:
        with connect(self.db, timeout) as conn:
            covered_to = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            with conn.transaction():  # a commit record after covered_to: recovery needs one to stop
                conn.execute("SELECT pg_current_xact_id()")
            lsn, segment = conn.execute("SELECT lsn, pg_walfile_name(lsn) FROM pg_switch_wal() lsn").fetchone()
            self._wait_archived(conn, segment, timeout)
        return LogPosition(covered_to=covered_to, end_position=str(lsn), end_segment=segment)

    @staticmethod
    def _wait_archived(conn: psycopg.Connection, segment: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            last, failed, failed_at = conn.execute(
                "SELECT last_archived_wal, last_failed_wal, last_failed_time FROM pg_stat_archiver").fetchone()
            if last and last[:24] >= segment:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"WAL segment {segment} was not archived within {timeout:.0f} s "
                                   f"(last archived {last}, last failed {failed} at {failed_at})")
            time.sleep(0.1)

    def check_archive(self, log_mount: Path, since_segment: str | None) -> ArchiveCheck:
        first, last, missing = wal.gaps(wal.segments(log_mount / ARCHIVE_SUBDIR), since_segment)
        return ArchiveCheck(first, last, continuous=not missing, missing=missing)

    # -- clones ----------------------------------------------------------------------------
    def data_dir(self, data_mount: Path) -> Path:
        return data_mount / self.data_directory

    def prepare_clone(self, spec: CloneSpec) -> None:
        pgdata = self.data_dir(spec.data_mount)
        for stale in ("postmaster.pid", "postmaster.opts", "recovery.signal", "standby.signal"):
            (pgdata / stale).unlink(missing_ok=True)
        for slot in (pgdata / "pg_replslot").glob("*"):
            sysutil.run(["rm", "-rf", str(slot)])
        meta = spec.snapshot_meta
        if meta.get("backup_label"):
            (pgdata / "backup_label").write_text(meta["backup_label"])
        if meta.get("tablespace_map"):
            (pgdata / "tablespace_map").write_text(meta["tablespace_map"])
        self._write_settings(pgdata / "postgresql.auto.conf", self._settings(spec))
        (pgdata / "recovery.signal").touch()
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        self._chown(pgdata, spec.run_dir)

    def _settings(self, spec: CloneSpec) -> dict[str, str]:
        # Pause at the target and promote with pg_promote(): 'promote' would wait for a full
        # end-of-recovery checkpoint first (seconds, whatever the database size).
        settings = {"recovery_target_action": "pause" if spec.target is not None else "promote"}
        if not spec.in_place:
            settings.update({"port": str(spec.port), "unix_socket_directories": str(spec.run_dir),
                             "cluster_name": spec.name, "archive_mode": "off"})
        if spec.restore_command is not None:
            settings["restore_command"] = spec.restore_command
        elif spec.log_mount is not None:
            archive = spec.log_mount / ARCHIVE_SUBDIR
            settings["restore_command"] = f'cp "{archive}/%f" "%p"'
        if spec.target is not None:
            settings["recovery_target_time"] = spec.target.astimezone(dt.UTC).isoformat()
        return settings

    @staticmethod
    def _write_settings(path: Path, settings: dict[str, str]) -> None:
        text = path.read_text() if path.exists() else ""
        if CONF_BEGIN in text:
            text = text[: text.index(CONF_BEGIN)] + text[text.index(CONF_END) + len(CONF_END):].lstrip("\n")
        lines = [CONF_BEGIN] + [f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in settings.items()]
        path.write_text(text.rstrip("\n") + "\n" + "\n".join(lines + [CONF_END]) + "\n")

    def _chown(self, *paths: Path) -> None:
        user = pwd.getpwnam(self.os_user)
        for p in paths:
            os.chown(p, user.pw_uid, user.pw_gid)
            for child in p.iterdir() if p.is_dir() else []:
                if child.is_file():
                    os.chown(child, user.pw_uid, user.pw_gid)

    def pg_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", self.os_user, "--", str(self.bin_dir / "pg_ctl"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def start(self, spec: CloneSpec, timeout: float) -> DbTarget:
        pgdata = self.data_dir(spec.data_mount)
        logfile = spec.run_dir / "postgresql.log"
        proc = self.pg_ctl("-D", str(pgdata), "-l", str(logfile), "-w", "-t", str(int(timeout)), "start",
                           timeout=timeout + 10)
        if proc.returncode != 0:
            raise RecoveryFailed(f"pg_ctl start failed ({proc.returncode}): {proc.stderr.strip()}\n"
                                 + _tail(logfile))
        target = self.db if spec.in_place else DbTarget(host=str(spec.run_dir), port=spec.port, user=self.os_user)
        self.wait_promoted(pgdata, target, logfile, timeout)
        return target

    def wait_promoted(self, pgdata: Path, target: DbTarget, logfile: Path, timeout: float) -> None:
        """pg_ctl -w returns at the first consistent point: poll until recovery has really ended."""
        deadline = time.monotonic() + timeout
        while True:
            if not _postmaster_alive(pgdata):
                raise RecoveryFailed("the server stopped during recovery:\n" + _tail(logfile))
            with contextlib.suppress(psycopg.OperationalError), connect(target, 5) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
                if conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused":
                    conn.execute("SELECT pg_promote(true, %s)", [int(timeout)])
                    continue
            if time.monotonic() > deadline:
                raise RecoveryFailed(f"recovery did not end within {timeout:.0f} s:\n" + _tail(logfile))
            time.sleep(0.1)

    def stop(self, data_mount: Path, run_dir: Path | None = None) -> None:
        pgdata = self.data_dir(data_mount)
        if not (pgdata / "postmaster.pid").exists():
            return
        if self.pg_ctl("-D", str(pgdata), "status").returncode != 0:
            return
        proc = self.pg_ctl("-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop", timeout=90)
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {proc.stderr.strip()}")

    def mask(self, target: DbTarget, sql: str | None, script: str | None) -> None:
        if sql:
            with connect(target) as conn, conn.transaction():
                conn.execute(sql)
        if script:
            dsn = f"host={target.host} port={target.port} user={target.user} dbname={target.database or 'postgres'}"
            proc = subprocess.run([script], env={**os.environ, "CLONE_DSN": dsn}, capture_output=True, text=True,
                                  timeout=3600)
            if proc.returncode != 0:
                raise RuntimeError(f"masking script {script} exited {proc.returncode}: {proc.stderr.strip()}")


def _postmaster_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
