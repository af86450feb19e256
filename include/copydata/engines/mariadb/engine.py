"""MariaDB 10.11+ (and MySQL 8): BACKUP STAGE around the snapshot, archived binary logs, PITR by replay."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..base import ArchiveCheck, CloneSpec, DbTarget, Engine, FreezeResult, LogPosition
from . import binlog, inplace, replay, server, sql
from . import datadir as prep
from .server import RecoveryFailed
from .sql import socket_of

log = logging.getLogger(__name__)
ARCHIVE_SUBDIR = "binlog"
DEFAULT_FLAVOR = sql.Flavor("mariadb", (10, 11, 0))
FLUSH_GRACE = dt.timedelta(milliseconds=250)


class QuiesceLost(RuntimeError):
    """The freeze session ended before the thaw: the snapshot taken in the window may not be consistent."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: Any) -> dt.datetime:
    """A server DATETIME read with UTC_TIMESTAMP() (naive) as an aware UTC datetime."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class MariaDbEngine(Engine):
    name = "mariadb"

    def __init__(self, db: DbTarget | None = None, data_mount: Path | None = None, archive_mount: Path | None = None,
                 data_directory: str = "mysql", os_user: str = "mysql", flavor: str | None = None,
                 connect: sql.Connect = sql.connect, sleep: Callable[[float], None] = time.sleep):
        self.db, self.data_mount, self.archive_mount = db, data_mount, archive_mount
        self.data_directory, self.os_user = data_directory, os_user
        self.name = flavor or "mariadb"
        self.flavor: sql.Flavor | None = None  # detected on the first connection
        self._connect, self._sleep = connect, sleep
        self._children: dict[Path, subprocess.Popen] = {}

    # -- sessions ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, timeout: float) -> Iterator[tuple[Any, sql.Flavor]]:
        """One autocommit connection to the source, its flavour detected, its lock waits bounded."""
        conn = self._connect(self.db, timeout)
        try:
            cur = conn.cursor()
            self.flavor = sql.detect(cur)
            if self.flavor.name != self.name:
                log.warning("engine %s: the server is %s %s", self.name, self.flavor.name, self.flavor.version)
            cur.execute(self.flavor.session_timeouts(timeout))
            yield cur, self.flavor
        finally:
            conn.close()

    # -- snapshots -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def quiesce(self, label: str, timeout: float) -> Iterator[FreezeResult]:
        """MariaDB: BACKUP STAGE START + BLOCK_COMMIT, position captured, ..., BACKUP STAGE END.
        MySQL: LOCK INSTANCE FOR BACKUP, ..., UNLOCK INSTANCE. The end runs whatever happens; the locks
        belong to the session, so the server also drops them if this process dies."""
        res = FreezeResult(started_at=utcnow())
        with self._session(timeout) as (cur, flavor):
            try:
                for statement in flavor.freeze():
                    cur.execute(statement)
                res.frozen_at = utcnow()
                res.meta.update(self._capture(cur, flavor), label=label)
                if flavor.mariadb:  # commits are blocked: the snapshot is exactly as of this instant
                    res.consistent_at = dt.datetime.fromisoformat(res.meta["server_time"])
                yield res
            except BaseException:
                self._thaw(cur, flavor, res, strict=False)
                raise
            self._thaw(cur, flavor, res, strict=True)

    def _capture(self, cur: Any, flavor: sql.Flavor) -> dict:
        file, pos = sql.query_one(cur, flavor.binlog_status())[:2]
        gtid, now = sql.query_one(cur, f"SELECT {flavor.gtid_variable()}, UTC_TIMESTAMP(6)")
        settings = dict(zip(flavor.settings_names(), sql.query_one(cur, flavor.settings_query()), strict=True))
        state = {k: _text(settings.pop(k)) for k in ("gtid_binlog_state", "gtid_mode") if k in settings}
        meta = {**state, "flavor": flavor.name, "version": ".".join(map(str, flavor.version)), "binlog_file": file,
                "binlog_pos": int(pos), "start_segment": file, "server_time": as_utc(now).isoformat(),
                flavor.gtid_variable().removeprefix("@@GLOBAL."): gtid,
                "server_id": int(settings.pop("server_id")), "datadir": _text(settings.pop("datadir")),
                "log_bin_basename": _text(settings.pop("log_bin_basename")),
                "settings": {k: _text(v) for k, v in settings.items()}}
        return meta

    def _thaw(self, cur: Any, flavor: sql.Flavor, res: FreezeResult, strict: bool) -> None:
        try:
            if strict and not flavor.mariadb:  # commits went on: the snapshot is as of an instant in the window
                res.consistent_at = as_utc(sql.query_one(cur, "SELECT UTC_TIMESTAMP(6)")[0])
            cur.execute(flavor.thaw())
        except Exception as exc:
            if strict:
                raise QuiesceLost(f"the freeze session failed before {flavor.thaw()} ({exc}): the freeze may "
                                  "have ended before the snapshot; discard it") from exc
            log.warning("%s failed after an error (%s); closing the session releases the lock", flavor.thaw(), exc)
        finally:
            res.thawed_at = utcnow()

    # -- logs ----------------------------------------------------------------------------------
    def archive_dir(self, archive_mount: Path | None = None) -> Path:
        mount = archive_mount or self.archive_mount
        if mount is None:
            raise ValueError("this engine was made without an archive mount")
        return mount / ARCHIVE_SUBDIR

    def push_logs(self, timeout: float) -> LogPosition:
        """covered_to = a whole second S reached on the server clock before FLUSH BINARY LOGS: the rotate
        event that closes the file is stamped S or later, so replay to any T <= S ends inside the archive."""
        with self._session(timeout) as (cur, flavor):
            covered_to = self._next_second(cur)
            cur.execute("FLUSH BINARY LOGS")
            file, pos = sql.query_one(cur, flavor.binlog_status())[:2]
            gtid = sql.query_one(cur, f"SELECT {flavor.gtid_variable()}")[0]
            cur.execute("SHOW BINARY LOGS")
            names = [row[0] for row in cur.fetchall()]
            source = Path(sql.query_one(cur, "SELECT @@GLOBAL.log_bin_basename")[0]).parent
        closed = [n for n in names if n != file]
        folder = self.archive_dir()
        folder.mkdir(parents=True, exist_ok=True)
        copied = [n for n in closed if binlog.archive_file(source / n, folder)]
        log.info("archived %d binary log(s) up to %s; covered to %s", len(copied), closed[-1], covered_to)
        return LogPosition(covered_to=covered_to, end_position=f"{file}:{pos}", end_segment=closed[-1],
                           meta={flavor.gtid_variable().removeprefix("@@GLOBAL."): gtid, "archived": copied})

    def _next_second(self, cur: Any) -> dt.datetime:
        """The next whole second S of the server clock, once the clock reads S + FLUSH_GRACE: commits that
        began before S and take less than the grace land before the rotate event (stamped S)."""
        now = as_utc(sql.query_one(cur, "SELECT UTC_TIMESTAMP(6)")[0])
        second = now.replace(microsecond=0) + dt.timedelta(seconds=1)
        while now < second + FLUSH_GRACE:
            self._sleep(max(0.005, (second + FLUSH_GRACE - now).total_seconds()))
            now = as_utc(sql.query_one(cur, "SELECT UTC_TIMESTAMP(6)")[0])
        return second

    def check_archive(self, log_mount: Path, since_segment: str | None) -> ArchiveCheck:
        """Consecutive file numbers from since_segment, and (MariaDB) each file continuing the GTID
        history of the previous one: a server restored in place starts a new history."""
        folder = log_mount / ARCHIVE_SUBDIR
        names = binlog.listing(folder, binlog.basename(since_segment) if since_segment else None)
        first, last, missing = binlog.gaps(names, since_segment)
        scanned = [n for n in names if since_segment is None or binlog.number(n) >= binlog.number(since_segment)]
        missing += binlog.history_problems(folder, scanned)
        return ArchiveCheck(first, last, continuous=not missing, missing=missing)

    # -- clones --------------------------------------------------------------------------------
    def data_dir(self, data_mount: Path) -> Path:
        return data_mount / self.data_directory

    def clone_flavor(self, meta: dict) -> sql.Flavor:
        if meta.get("flavor"):
            return sql.parse_flavor(meta.get("version", "0.0.0"), meta["flavor"])
        return self.flavor or (DEFAULT_FLAVOR if self.name == "mariadb" else sql.Flavor("mysql", (8, 4, 0)))

    def prepare_clone(self, spec: CloneSpec) -> None:
        if spec.restore_command is not None:
            raise ValueError(f"{spec.name}: MariaDB replays the binary logs found in log_mount; it has no "
                             "restore_command (a PostgreSQL setting), so CloneSpec.restore_command must be None")
        datadir, meta = self.data_dir(spec.data_mount), spec.snapshot_meta
        flavor = self.clone_flavor(meta)
        if not datadir.is_dir():
            raise RecoveryFailed(f"no data directory at {datadir}")
        if not flavor.mariadb and meta.get("gtid_mode", "ON") != "ON":
            raise RecoveryFailed("MySQL without GTIDs: LOCK INSTANCE FOR BACKUP does not block commits, so the "
                                 "replay start cannot be known; set gtid_mode=ON on the source")
        base = binlog.basename(meta.get("binlog_file") or "mariadb-bin.000001")
        prep.relative_index(datadir, base)
        prep.remove_leftovers(datadir, flavor, spec.in_place)
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam(self.os_user)
        os.chown(spec.run_dir, user.pw_uid, user.pw_gid)
        for path in (datadir, spec.run_dir):
            prep.check_reachable(path, self.os_user)
        target = self.clone_target(spec)
        server.write_client_options(spec.run_dir / server.CLIENT_FILE, target)
        if spec.in_place:
            inplace.renumber(datadir, self.archive_dir(), base, self.os_user)
            return
        if len(str(spec.run_dir / sql.SOCKET_NAME)) > 107:
            raise RecoveryFailed(f"socket path {spec.run_dir / sql.SOCKET_NAME} is longer than 107 bytes")
        server.write_options(spec.run_dir / server.OPTION_FILE, flavor.option_group(),
                             prep.clone_options(spec, datadir, flavor, base, self.os_user))

    def clone_target(self, spec: CloneSpec) -> DbTarget:
        """A clone answers on <run_dir>/mysqld.sock (host = the run folder), with the source's accounts."""
        if spec.in_place:
            if self.db is None:
                raise ValueError("restore in place needs the database connection")
            return self.db
        user, password = (self.db.user, self.db.password) if self.db else ("root", None)
        return DbTarget(host=str(spec.run_dir), port=spec.port, user=user, password=password)

    def start(self, spec: CloneSpec, timeout: float) -> DbTarget:
        deadline = time.monotonic() + timeout
        datadir, meta = self.data_dir(spec.data_mount), spec.snapshot_meta
        flavor = self.clone_flavor(meta)
        target = self.clone_target(spec)
        proc, error_log = self._launch(spec, datadir, flavor)
        alive = (lambda: proc.poll() is None) if proc is not None else (lambda: True)
        server.wait_ready(lambda: self._connect(target, 5).close(), alive, error_log, deadline)
        if spec.in_place:
            inplace.drop_placeholders(datadir, binlog.basename(meta["binlog_file"]))
            with contextlib.closing(self._connect(target, 10)) as conn:
                inplace.purge_restored_binlogs(conn, flavor, deadline, self._sleep)
        if spec.log_mount is not None:
            self._replay(spec, flavor, target, deadline)
        return target

    def _launch(self, spec: CloneSpec, datadir: Path, flavor: sql.Flavor) -> tuple[subprocess.Popen | None, Path]:
        out = spec.run_dir / "mysqld.out"
        if spec.in_place:
            started = server.Started.load(inplace.started_file(datadir))
            if started is None:
                raise RecoveryFailed(f"copydata did not find a server on {datadir} when it stopped the source, "
                                     "so it does not know how to start it: start it yourself")
            proc = started.start(out)
        else:
            argv = [server.program(flavor.program("server")), f"--defaults-file={spec.run_dir / server.OPTION_FILE}"]
            proc = server.launch(argv, out)
            out = spec.run_dir / server.ERROR_LOG
        if proc is not None:
            self._children[datadir.resolve()] = proc
        return proc, out

    def _replay(self, spec: CloneSpec, flavor: sql.Flavor, target: DbTarget, deadline: float) -> None:
        meta, folder = spec.snapshot_meta, spec.log_mount / ARCHIVE_SUBDIR
        start = int(meta["binlog_pos"]) if flavor.mariadb else 4  # MySQL: from the file start, GTID auto-skip
        plan = replay.plan(folder, meta["binlog_file"], start, spec.target)
        client = [server.program(flavor.program("client")), f"--defaults-file={spec.run_dir / server.CLIENT_FILE}",
                  "--binary-mode", "--batch", "--max-allowed-packet=1G"]
        replay.run(plan, folder, [server.program(flavor.program("binlog"))], client, spec.run_dir,
                   max(1.0, deadline - time.monotonic()))
        if flavor.mariadb and plan.last_gtid:
            self._check_replayed(target, plan.last_gtid)
        log.info("%s: replayed %d transaction(s) to %s (stop before %s)", spec.name, plan.transactions,
                 plan.last_gtid, plan.stop_before or "the end of the archive")

    def _check_replayed(self, target: DbTarget, last_gtid: str) -> None:
        with contextlib.closing(self._connect(target, 10)) as conn:
            position = str(sql.query_one(conn.cursor(), "SELECT @@GLOBAL.gtid_binlog_pos")[0])
        if last_gtid not in position.split(","):
            raise RecoveryFailed(f"after replay the server is at {position}, expected {last_gtid}")

    def stop(self, data_mount: Path, run_dir: Path | None = None) -> None:
        """SIGTERM (a clean shutdown) to the server working in this data directory, then wait. Idempotent.
        Stopping the source (no run_dir: restore in place) records how it ran, to start it the same way."""
        datadir = self.data_dir(data_mount)
        pids = server.pids_on(datadir)
        if pids and run_dir is None:
            server.Started.of(pids[0]).save(inplace.started_file(datadir))
        if pids:
            server.terminate(pids)
        proc = self._children.pop(datadir.resolve(), None)
        if proc is not None:
            proc.wait(10)

    def mask(self, target: DbTarget, sql: str | None, script: str | None) -> None:
        """The SQL runs in one client session, in one transaction where the statements allow it; a script
        gets CLONE_DSN (mysql://user@localhost:port/db?unix_socket=...) and CLONE_DEFAULTS_FILE (credentials)."""
        flavor, masking_sql = self.flavor or DEFAULT_FLAVOR, sql
        with tempfile.TemporaryDirectory(prefix="copydata-mask-") as tmp:
            cnf = Path(tmp) / server.CLIENT_FILE
            server.write_client_options(cnf, target)
            if masking_sql:
                body = f"SET autocommit = 0;\n{masking_sql.strip().rstrip(';')};\nCOMMIT;\n"
                self._run([server.program(flavor.program("client")), f"--defaults-file={cnf}", "--batch"],
                          "masking SQL", input=body)
            if script:
                env = {**os.environ, "CLONE_DSN": _dsn(target), "CLONE_DEFAULTS_FILE": str(cnf)}
                if (sock := socket_of(target.host)) is not None:
                    env["MYSQL_UNIX_PORT"] = sock
                self._run([script], f"masking script {script}", env=env)

    @staticmethod
    def _run(cmd: list[str], what: str, **kwargs: Any) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, **kwargs)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} exited {proc.returncode}: {proc.stderr.strip()}")


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode()
    return "" if value is None else str(value)


def _dsn(target: DbTarget) -> str:
    sock = socket_of(target.host)
    where = f"localhost:{target.port}" if sock else f"{target.host}:{target.port}"
    return f"mysql://{target.user}@{where}/{target.database or ''}" + (f"?unix_socket={sock}" if sock else "")
