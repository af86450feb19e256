"""Recovery from a copydata repository alone: a running database at a point in time.

`recover_from_repo` builds a running PostgreSQL or MariaDB/MySQL at a point in time from the repository
alone: the `data` image is restored (to an array volume, or to a local file attached with a loop device: a
site without the array; copydata.replication.restore), mounted, and replayed with the logs (WAL, binary
logs) that a parallel prefetcher (copydata.replication.logfetch) downloads in order into a local folder laid
out like the archive volume (PostgreSQL: ahead of the replay; MariaDB: before it, while the data is
restored). `discard_recovery` releases one. Guide: docs/restore-from-object-storage.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from copydata import sysutil
from copydata.replication import archive, logfetch
from copydata.replication.restore import (
    LOCK_WAIT,
    ArrayVolumes,
    LocalFiles,
    LogMissing,
    PointInfo,
    RecoveryError,
    RestoreReport,
    choose_point,
    parse_time,
    restore_volumes,
)
from copydata.repo.errors import RepositoryError
from copydata.repo.logs import read_log_index

if TYPE_CHECKING:
    from copydata.engines.base import DbTarget, Engine
    from copydata.repo.repository import Repository

log = logging.getLogger(__name__)

POSTGRES_ENGINES = ("postgresql", "postgres")
MARKER = "recovery.json"   # in a recovery's work folder: its engine, data directory and OS user
# how a replay that ran out of logs fails: PostgreSQL (recovery ends early), MariaDB (copydata's replay plan)
OUT_OF_LOGS = ("before configured recovery target was reached", "could not locate required checkpoint",
               "the target is not covered by this log backup")


@dataclass(frozen=True)
class LogPlan:
    histories: list[str]       # every timeline history file stored (small)
    segments: list[str]        # start segment .. the end of the contiguous run, in replay order
    consistent_through: str    # the stop segment: the point is consistent once it is replayed
    next_missing: str          # the first segment after the plan (not stored, or not yet written)

    @property
    def names(self) -> list[str]:
        return self.histories + self.segments


def plan_wal(names: list[str], snapshot_meta: dict[str, Any], application: str = "") -> LogPlan:
    """The WAL a PostgreSQL point needs: every segment from the snapshot's start segment through its stop
    segment (LogMissing names the first one absent), then every further segment as long as the sequence
    is unbroken. Segments of older timelines than the point's are left out."""
    from copydata.engines.postgres import wal

    start = snapshot_meta.get("start_segment") or wal.label_start_segment(snapshot_meta.get("backup_label") or "")
    if not start:
        raise RecoveryError(f"{application}: the point's engine metadata has no start_segment or backup_label")
    stop = snapshot_meta.get("stop_segment") or start
    tli, start_no = wal.parse(start)
    stop_no = max(start_no, wal.parse(stop)[1])
    by_no: dict[int, list[str]] = {}
    for n in names:
        if wal.SEGMENT_RE.match(n):
            seg_tli, no = wal.parse(n)
            if seg_tli >= tli and no >= start_no:
                by_no.setdefault(no, []).append(n)
    for no in range(start_no, stop_no + 1):
        if no not in by_no:
            missing = wal.name(tli, no)
            raise LogMissing(f"log {application}/{missing} is missing from the repository: point needs "
                             f"{start} .. {stop} to become consistent", missing)
    end = stop_no
    while end + 1 in by_no:
        end += 1
    newest_tli = max(wal.parse(n)[0] for n in by_no[end])
    segments = [n for no in range(start_no, end + 1) for n in sorted(by_no[no])]
    histories = sorted(n for n in names if n.endswith(".history"))
    return LogPlan(histories, segments, stop, wal.name(newest_tli, end + 1))


def plan_binlogs(names: list[str], snapshot_meta: dict[str, Any], application: str = "") -> LogPlan:
    """The binary logs a MariaDB/MySQL point needs: the snapshot's binlog_file (replay starts in it, at
    binlog_pos) and the unbroken run of the same series after it. The point's data directory holds the
    logs up to the snapshot, so only that first file is required; a target beyond the run is reported by
    the replay as missing plan.next_missing."""
    from copydata.engines.mariadb import binlog

    first = str(snapshot_meta.get("binlog_file") or "").rsplit("/", 1)[-1]
    if not binlog.NAME_RE.match(first):
        raise RecoveryError(f"{application}: the point's engine metadata has no binlog_file")
    base, start = binlog.basename(first), binlog.number(first)
    series = {binlog.number(n): n for n in names if binlog.NAME_RE.match(n) and binlog.basename(n) == base}
    if start not in series:
        raise LogMissing(f"log {application}/{first} is missing from the repository: the point's replay "
                         "starts in it", first)
    end = start
    while end + 1 in series:
        end += 1
    return LogPlan([], [series[n] for n in range(start, end + 1)], first, binlog.sibling(first, end + 1))


def latest_covered(repo: Repository, application: str, segments: list[str], look_back: int = 16
                   ) -> dt.datetime | None:
    """The newest `covered_to` a log index records in its metadata (a log backup's last segment), looking
    at the newest `look_back` segments of the plan; None if none records one."""
    for name in reversed(segments[-look_back:]):
        with contextlib.suppress(RepositoryError):
            covered = read_log_index(repo, application, name).metadata.get("covered_to")
            if covered:
                return parse_time(covered, f"covered_to of log {application}/{name}")
    return None


# -- recovery ----------------------------------------------------------------------------------------

@dataclass
class Recovery:
    """A running database recovered from a repository. close() stops it and releases what it holds."""

    application: str
    point: str
    consistent_at: dt.datetime | None
    target: dt.datetime | None
    workdir: Path
    data_mount: Path
    log_folder: Path
    run_dir: Path
    db: DbTarget | None = None
    engine: Engine | None = field(default=None, repr=False)
    restore: RestoreReport | None = field(default=None, repr=False)
    fetch: logfetch.FetchStats = field(default_factory=logfetch.FetchStats, repr=False)
    requests: logfetch.Requests = field(default_factory=logfetch.Requests, repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    loop_device: str | None = None
    data_image: Path | None = None
    data_volume: str | None = None
    engine_name: str = "postgresql"
    _closers: list = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"application": self.application, "point": self.point, "engine": self.engine_name,
                "consistent_at": self.consistent_at.isoformat() if self.consistent_at else None,
                "target": self.target.isoformat() if self.target else "latest",
                "host": self.db.host if self.db else None, "port": self.db.port if self.db else None,
                "data_mount": str(self.data_mount),
                "data_image": str(self.data_image) if self.data_image else None,
                "data_volume": self.data_volume, "loop_device": self.loop_device,
                "wal_files": self.fetch.fetched, "wal_bytes": self.fetch.bytes,
                "wal_requested": len(self.requests.served),
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}

    def close(self, remove_files: bool = True) -> None:
        """Stop the server, unmount, detach the loop device; remove the work folder's files (the image,
        the fetched logs) unless remove_files is False. Idempotent; keeps going after an error."""
        _run_closers(self._closers)
        if remove_files and self.workdir.exists() and not _mounted_under(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(frozen=True)
class _Ask:
    """What recover_from_repo was asked, for the engine's steps."""

    family: str               # "postgresql", "mariadb" or "mysql"
    meta: dict[str, Any]      # the catalog snapshot's engine_meta
    port: int
    name: str
    engine: Engine | None
    data_directory: str
    os_user: str
    overlap: bool
    timeout: float


def recover_from_repo(repo: Repository, application: str, workdir: str | os.PathLike, port: int, *,
                      point: str | None = None, point_in_time: str | dt.datetime | None = None,
                      data_on: ArrayVolumes | None = None, name: str | None = None,
                      engine: Engine | None = None, data_directory: str | None = None, os_user: str | None = None,
                      fetch_workers: int = 4, readahead: int = 32, overlap: bool = True,
                      timeout: float = 900, lock_wait: float = LOCK_WAIT) -> Recovery:
    """Start a PostgreSQL or MariaDB/MySQL recovered to `point_in_time` (ISO 8601, or 'latest'/None) from
    `point` (default: the newest point consistent at or before the target) using only the repository.

    The data image goes to <workdir>/data.img (attached with a loop device) or, with `data_on`, to the
    array volume named for role "data" (delta restore). It is mounted at <workdir>/data; the logs are
    fetched into <workdir>/logs/<archive folder> (wal/ or binlog/, as on the archive volume) and the
    server's sockets and log are in <workdir>/run. PostgreSQL: with `overlap` the server starts as soon as
    the data is restored, and its restore_command waits for segments still being fetched; without, every
    planned segment is fetched first. MariaDB/MySQL: the binary logs from the snapshot's file on are
    fetched while the data is restored, then the server starts and the engine replays them to the target
    (as root@localhost over the socket unless `engine` carries an account). `latest` recovers to the
    newest `covered_to` the log indexes record, else to the end of the stored logs. data_directory and
    os_user default to the engine's (pgdata/postgres, mysql/mysql). On failure everything made here is
    released before the error is raised."""
    from copydata.sla.model import ENGINE_DEFAULTS

    t_start = time.monotonic()
    target = parse_time(point_in_time)
    closers: list = []
    lock = repo.lock("shared", f"recover {application}", wait=lock_wait)
    closers.append(lock.release)
    try:
        info = choose_point(repo, application, target, point)
        family = engine_family(info)
        defaults = ENGINE_DEFAULTS[family]
        ask = _Ask(family, dict(info.manifest.engine.get("snapshot") or {}), port, name or f"{application}-repo"[:63],
                   engine, data_directory or defaults["data_directory"], os_user or defaults["os_user"],
                   overlap, timeout)
        plan = (plan_wal if family == "postgresql" else plan_binlogs)(repo.logs(application), ask.meta, application)
        if target is None:
            target = latest_covered(repo, application, plan.segments)
            if target is not None and info.consistent_at is not None and target < info.consistent_at:
                target = None
        log.info("%s: recovering %s (consistent at %s) to %s with %d log files planned (%s .. %s)",
                 application, info.point, info.consistent_at, target or "the end of the stored logs",
                 len(plan.names), plan.segments[0], plan.segments[-1])
        rec = _open_workdir(Path(workdir).resolve(), info, target, ask, closers)
        fetcher = logfetch.LogFetcher(repo, application, plan.names, rec.log_folder, workers=fetch_workers,
                                      readahead=readahead if overlap and family == "postgresql"
                                      else max(1, len(plan.names)),
                                      os_user=ask.os_user if family == "postgresql" else None,
                                      subdir=archive.archive_subdir(family))
        rec.fetch = fetcher.stats
        closers.append(fetcher.stop)
        fetcher.start()   # downloads the logs while the data image is restored
        _restore_and_mount(repo, info, rec, data_on)
        (_start_postgres if family == "postgresql" else _start_mariadb)(rec, fetcher, plan, ask)
        fetcher.stop()
        lock.release()
        rec.requests = fetcher.requests()
        rec.timings.update(_fetch_timings(fetcher.stats, rec.requests, fetcher.wal_dir))
        rec.timings["total_s"] = time.monotonic() - t_start
        log.info("%s: recovered %s to %s: %s", application, info.point, target or "latest", rec.summary())
        return rec
    except BaseException:
        _run_closers(closers)
        raise


def engine_family(info: PointInfo) -> str:
    """"postgresql", "mariadb" or "mysql": the engine a point's manifest names (none: PostgreSQL)."""
    name = info.engine or "postgresql"
    if name in POSTGRES_ENGINES:
        return "postgresql"
    if name in archive.MYSQL_FAMILY:
        return name
    raise RecoveryError(f"point {info.application}/{info.point} is a {name} point: recovery from a repository "
                        "supports PostgreSQL, MariaDB and MySQL")


def _open_workdir(workdir: Path, info: PointInfo, target: dt.datetime | None, ask: _Ask, closers: list) -> Recovery:
    """The work folder (refused while something is mounted or attached there) with its marker, and the
    Recovery that will hold what is made in it."""
    if "data" not in info.volumes:
        raise RecoveryError(f"point {info.application}/{info.point} has no 'data' volume")
    if workdir.exists() and (_mounted_under(workdir) or sysutil.loops_backed_by(workdir)):
        raise RecoveryError(f"work folder {workdir} is in use (mounted or attached): discard it first")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    (workdir / MARKER).write_text(json.dumps({
        "application": info.application, "point": info.point, "engine": ask.family,
        "data_directory": ask.data_directory, "os_user": ask.os_user}, indent=1) + "\n")
    return Recovery(info.application, info.point, info.consistent_at, target, workdir=workdir,
                    data_mount=workdir / "data", log_folder=workdir / "logs", run_dir=workdir / "run",
                    engine_name=ask.family, _closers=closers)


def _restore_and_mount(repo: Repository, info: PointInfo, rec: Recovery, data_on: ArrayVolumes | None) -> None:
    """The point's data image to <workdir>/data.img + a loop device, or to the data_on volume; mounted."""
    from copydata.connector import LocalConnector

    connector = data_on.connector if data_on is not None else LocalConnector()
    t = time.monotonic()
    if data_on is None:
        files = LocalFiles(rec.workdir, ["data"])
        rec.restore = restore_volumes(repo, info, files)
        rec.data_image = files.path("data")
        rec.loop_device = sysutil.loop_attach(rec.data_image)
        rec._closers.append(lambda dev=rec.loop_device: sysutil.loop_detach(dev))
        device = rec.loop_device
    else:
        volumes = {"data": data_on.volumes["data"]}
        dest = ArrayVolumes(data_on.array, data_on.connector, data_on.host, volumes, disconnect=False)
        rec.restore = restore_volumes(repo, info, dest)
        rec.data_volume = volumes["data"]
        device = rec.restore.volume("data").device
    rec.timings["restore_data_s"] = time.monotonic() - t
    connector.mount(device, str(rec.data_mount))
    rec._closers.append(lambda: connector.unmount(str(rec.data_mount)))


def _start_postgres(rec: Recovery, fetcher: logfetch.LogFetcher, plan: LogPlan, ask: _Ask) -> None:
    """PostgreSQL on the mounted data, replaying the WAL through the waiting restore_command (overlap)
    or, once every planned segment is fetched, the engine's own."""
    from copydata.engines.postgres import PostgresEngine, RecoveryFailed

    engine = ask.engine or PostgresEngine(None, data_directory=ask.data_directory, os_user=ask.os_user)
    command = logfetch.restore_command(rec.log_folder, max_wait=ask.timeout) if ask.overlap else None
    if not ask.overlap:
        _wait_fetch(rec, fetcher, ask.timeout)
    _start_engine(rec, engine, ask, command, RecoveryFailed, fetcher, plan)


def _start_mariadb(rec: Recovery, fetcher: logfetch.LogFetcher, plan: LogPlan, ask: _Ask) -> None:
    """MariaDB/MySQL on the mounted data, then the engine replays the fetched binary logs (all of them
    in place first: mariadb-binlog reads the folder) to the target."""
    from copydata.engines.mariadb import MariaDbEngine
    from copydata.engines.mariadb.server import RecoveryFailed

    engine = ask.engine or MariaDbEngine(None, data_directory=ask.data_directory, os_user=ask.os_user,
                                         flavor=ask.family)
    _wait_fetch(rec, fetcher, ask.timeout)
    _start_engine(rec, engine, ask, None, RecoveryFailed, fetcher, plan)


def _wait_fetch(rec: Recovery, fetcher: logfetch.LogFetcher, timeout: float) -> None:
    t = time.monotonic()
    fetcher.wait(timeout=timeout)
    rec.timings["fetch_wait_s"] = time.monotonic() - t


def _start_engine(rec: Recovery, engine: Engine, ask: _Ask, command: str | None, failed: type[Exception],
                  fetcher: logfetch.LogFetcher, plan: LogPlan) -> None:
    from copydata.engines.base import CloneSpec

    rec.engine = engine
    spec = CloneSpec(name=ask.name, data_mount=rec.data_mount, log_mount=rec.log_folder, port=ask.port,
                     target=rec.target, snapshot_meta=ask.meta, run_dir=rec.run_dir, restore_command=command)
    engine.prepare_clone(spec)
    rec._closers.append(lambda: engine.stop(rec.data_mount, rec.run_dir))
    t = time.monotonic()
    try:
        rec.db = engine.start(spec, ask.timeout)
    except failed as exc:
        raise _explain(exc, fetcher, plan, rec.application, rec.target) from exc
    rec.timings["replay_s"] = time.monotonic() - t


def discard_recovery(workdir: str | os.PathLike, data_directory: str | None = None,
                     os_user: str | None = None) -> None:
    """Release a recovery that another process made (e.g. an Airflow task), from its work folder alone:
    stop the server on <workdir>/data (PostgreSQL or MariaDB/MySQL, as the folder's marker says; no
    marker: PostgreSQL), unmount whatever is mounted below workdir, detach the loop devices backed by
    files below it, remove the folder. Array volumes are left as they are. Idempotent."""
    workdir = Path(workdir).resolve()
    if not workdir.exists():
        return
    _stop_server(workdir, data_directory, os_user)
    root = str(workdir)
    points = [line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p == root or p.startswith(root + os.sep)), reverse=True):
        sysutil.umount(point)
    for dev in sysutil.loops_backed_by(workdir).values():
        sysutil.loop_detach(dev)
    if not _mounted_under(workdir):
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_server(workdir: Path, data_directory: str | None, os_user: str | None) -> None:
    """The server a recovery started on <workdir>/data, stopped by the engine that the marker names."""
    from copydata.sla.model import ENGINE_DEFAULTS

    marker: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        marker = json.loads((workdir / MARKER).read_text())
    family = marker.get("engine") if marker.get("engine") in ENGINE_DEFAULTS else "postgresql"
    data_directory = data_directory or marker.get("data_directory") or ENGINE_DEFAULTS[family]["data_directory"]
    os_user = os_user or marker.get("os_user") or ENGINE_DEFAULTS[family]["os_user"]
    if family in archive.MYSQL_FAMILY:
        from copydata.engines.mariadb import MariaDbEngine

        MariaDbEngine(None, data_directory=data_directory, os_user=os_user).stop(workdir / "data", workdir / "run")
    elif (workdir / "data" / data_directory / "postmaster.pid").exists():
        from copydata.engines.postgres import PostgresEngine

        PostgresEngine(None, data_directory=data_directory, os_user=os_user).stop(workdir / "data")


def _explain(exc: Exception, fetcher: logfetch.LogFetcher, plan: LogPlan, application: str,
             target: dt.datetime | None) -> RepositoryError:
    """A clean error for a recovery that failed: the fetch error, or the first log missing after the plan."""
    if fetcher.stats.error:
        return RepositoryError(f"fetching the logs failed: {fetcher.stats.error}\n{exc}")
    text = str(exc)
    if any(sign in text for sign in OUT_OF_LOGS):
        return LogMissing(f"log {application}/{plan.next_missing} is missing from the repository: recovery to "
                          f"{target.isoformat() if target else 'latest'} ran out of logs after {plan.segments[-1]}"
                          f"\n{text}", plan.next_missing)
    return RepositoryError(f"recovery from the repository failed: {text}")


def _fetch_timings(stats: logfetch.FetchStats, requests: logfetch.Requests, wal_dir: Path) -> dict[str, float]:
    """fetch_s: fetcher start to the last file in place (it starts with the data restore); fetch_mib_s: its
    rate; replay_wal_mib: WAL the server consumed; replay_stall_s: time it waited for the fetch."""
    out = {"fetch_busy_s": stats.busy, "replay_stall_s": requests.stall}
    if stats.first_ready is not None:
        out["fetch_first_s"] = stats.first_ready
    if stats.ready_at:
        out["fetch_s"] = max(stats.ready_at.values())
        out["fetch_mib_s"] = stats.bytes / (1 << 20) / max(out["fetch_s"], 1e-6)
    consumed = 0
    for name in {n for n, _, _ in requests.served}:
        with contextlib.suppress(OSError):
            consumed += (wal_dir / name).stat().st_size
    out["replay_wal_mib"] = consumed / (1 << 20)
    return out


def _run_closers(closers: list) -> None:
    while closers:
        fn = closers.pop()
        try:
            fn()
        except Exception as exc:   # keep releasing the rest
            log.warning("cleanup step failed: %s", exc)


def _mounted_under(folder: Path) -> bool:
    root = os.path.realpath(folder)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == root or point.startswith(root + os.sep):
            return True
    return False
